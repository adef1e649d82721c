"""Appends that a replayed micro-batch cannot repeat: each commit names its (app id, batch).

Delta's own idempotent append (`txnAppId`/`txnVersion`) looks the app's version up in the
table's full snapshot state, which Delta 4.4 rebuilds with a Spark job on every commit
(delta-io/delta PR #6929 reads it from the checksum file, after 4.4). A 2,000-row append
took 0.89 s that way and 0.19 s without it (`benchmarks/sink_floor.py`). So each append
carries its app id and batch id in the commit's `userMetadata` instead, written atomically
with the commit, and the check reads the table's recent history -- once per table per run,
because only the first micro-batch of a run can be the replay of one that crashed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_MARKER = "pitstop"
# History pages read while looking for this app's last commit: other writers (maintenance,
# another query) may have committed since; the last page is the whole retained log.
_HISTORY_PAGES = (100, 1_000, None)


def commit_marker(app_id: str, batch_id: int) -> str:
    """The `userMetadata` of a commit made by `app_id` for micro-batch `batch_id`."""
    return json.dumps({_MARKER: app_id, "batch": batch_id}, separators=(",", ":"))


def marked_batch(user_metadata: str | None, app_id: str) -> int | None:
    """The batch id a commit's `userMetadata` names for `app_id` (None: not this app's)."""
    if not user_metadata:
        return None
    try:
        marker = json.loads(user_metadata)
    except ValueError:
        return None
    if not isinstance(marker, dict) or marker.get(_MARKER) != app_id:
        return None
    batch = marker.get("batch")
    return batch if isinstance(batch, int) else None


def last_committed_batch(spark: SparkSession, path: str, app_id: str) -> int:
    """The highest batch `app_id` committed to the Delta table at `path` (-1: none)."""
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)
    for limit in _HISTORY_PAGES:
        rows = (table.history(limit) if limit else table.history()).select("userMetadata").collect()
        batches = [b for r in rows if (b := marked_batch(r.userMetadata, app_id)) is not None]
        if batches:
            return max(batches)
        if limit is None or len(rows) < limit:
            return -1
    return -1


def first_marked_version(spark: SparkSession, path: str, app_id: str) -> int | None:
    """The table version of `app_id`'s earliest commit to the Delta table at `path` (None:
    it made none). Reads the whole retained history: only a query's start needs it."""
    from delta.tables import DeltaTable

    rows = DeltaTable.forPath(spark, path).history().select("version", "userMetadata").collect()
    versions = [r.version for r in rows if marked_batch(r.userMetadata, app_id) is not None]
    return min(versions) if versions else None


@dataclass
class AppendLedger:
    """Idempotent appends of one query run: the replay check runs once per table."""

    spark: SparkSession
    last: dict[str, int] = field(default_factory=dict)

    def append(self, frame: DataFrame, path: str, app_id: str, batch_id: int) -> bool:
        """Append `frame` to `path` unless `app_id` already committed `batch_id` there."""
        key = f"{app_id}|{path}"
        if key not in self.last:
            self.last[key] = last_committed_batch(self.spark, path, app_id)
        if self.last[key] >= batch_id:
            log.info("Batch %d is already in %s; skipping the replayed append", batch_id, path)
            return False
        (
            frame.write.format("delta")
            .mode("append")
            .option("userMetadata", commit_marker(app_id, batch_id))
            .save(path)
        )
        self.last[key] = batch_id
        return True


def release_checkpoint(frame: DataFrame) -> None:
    """Drop a local checkpoint's blocks now rather than at the next cleaner pass."""
    plan = frame._jdf.queryExecution().logical()
    if plan.getClass().getSimpleName() == "LogicalRDD":
        plan.rdd().unpersist(False)
