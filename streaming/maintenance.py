"""Upkeep for the Delta tables a long-running stream writes: compact, then vacuum.

Every micro-batch adds small files to the appended tables, and every alert MERGE leaves the
files it rewrote behind. Reads stay fast for a good while (the stream's lookup was no slower
at 20,000 files than at 100: `benchmarks/table_files.py`), but a job that commits every few
seconds makes hundreds of thousands of files a year and keeps every rewritten one on disk.
`pitstop maintain` runs Delta's own OPTIMIZE (bin-packing compaction) and VACUUM on each
table; it is safe while the stream runs and belongs on a schedule next to retraining.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from core.config import PitstopConfig
from core.errors import PitstopError
from streaming import tables

log = logging.getLogger(__name__)


def _conflicts() -> tuple[type[Exception], ...]:
    from delta import exceptions as conflicts

    # Delta's Python conflict classes do not share a base class, so name them all.
    return (
        conflicts.DeltaConcurrentModificationException,
        conflicts.ConcurrentWriteException,
        conflicts.ConcurrentAppendException,
        conflicts.ConcurrentDeleteReadException,
        conflicts.ConcurrentDeleteDeleteException,
        conflicts.ConcurrentTransactionException,
    )


# A compaction that races the stream's commits (or `pitstop alerts ack`) is run again.
retry_on_conflict = retry(
    retry=retry_if_exception_type(_conflicts()),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.2, max=5),
    reraise=True,
)

# Delta refuses a shorter retention by default: a running query, or one reading an older
# version, could lose files it still needs.
MIN_VACUUM_HOURS = 168.0
_LISTING = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


@dataclass(frozen=True)
class Upkeep:
    """What maintenance did to one table."""

    table: str
    files_before: int
    files_after: int
    vacuumed: bool


def maintain_tables(
    spark: SparkSession, cfg: PitstopConfig, vacuum_hours: float | None = MIN_VACUUM_HOURS
) -> list[Upkeep]:
    """Compact every existing Pitstop table, then VACUUM it unless `vacuum_hours` is None."""
    if vacuum_hours is not None and vacuum_hours < MIN_VACUUM_HOURS:
        raise PitstopError(
            f"--vacuum-hours must be at least {MIN_VACUUM_HOURS:g}: VACUUM would delete files "
            "a running stream or a reader of an older table version may still need."
        )
    with _listing_parallelism(spark, cfg):
        return [
            _maintain(spark, name, cfg.storage.table(name), vacuum_hours)
            for name in tables.SCHEMAS
            if DeltaTable.isDeltaTable(spark, cfg.storage.table(name))
        ]


def _maintain(spark: SparkSession, name: str, path: str, vacuum_hours: float | None) -> Upkeep:
    before = _file_count(spark, path)
    # A concurrent MERGE or UPDATE of the stream may win the race; try again, as it does.
    retry_on_conflict(lambda: DeltaTable.forPath(spark, path).optimize().executeCompaction())()
    if vacuum_hours is not None:
        DeltaTable.forPath(spark, path).vacuum(vacuum_hours)
    upkeep = Upkeep(name, before, _file_count(spark, path), vacuum_hours is not None)
    log.info("Maintained %s: %d -> %d files", name, upkeep.files_before, upkeep.files_after)
    return upkeep


@contextmanager
def _listing_parallelism(spark: SparkSession, cfg: PitstopConfig) -> Iterator[None]:
    """One file-listing task per core, unless the configuration says otherwise.

    VACUUM lists a table's files in `parallelPartitionDiscovery.parallelism` tasks, 10,000
    by default: ~13 s for an empty table on 2 cores, ~1.3 s with one task per core.
    """
    if _LISTING in cfg.spark.conf:
        yield
        return
    before = spark.conf.get(_LISTING, None)
    spark.conf.set(_LISTING, str(spark.sparkContext.defaultParallelism))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(_LISTING)
        else:
            spark.conf.set(_LISTING, before)


def _file_count(spark: SparkSession, path: str) -> int:
    return int(DeltaTable.forPath(spark, path).detail().select("numFiles").first()[0])
