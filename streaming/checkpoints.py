"""A query's checkpoint as Spark sees it (Hadoop file system: local paths or `abfss://`).

Used at start-up: is this checkpoint new (the state must be seeded), and is it a stream v1
checkpoint -- offsets and commits but no state -- that stream v2 takes over from?
"""

from __future__ import annotations

import json
import logging
import time

from pyspark.sql import SparkSession

from streaming.progress import source_offsets

log = logging.getLogger(__name__)


class _HadoopFs:
    def __init__(self, spark: SparkSession, location: str) -> None:
        jvm = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._fs = self._path(location).getFileSystem(conf)

    def exists(self, location: str) -> bool:
        return bool(self._fs.exists(self._path(location)))

    def names(self, location: str) -> list[str]:
        if not self.exists(location):
            return []
        return [s.getPath().getName() for s in self._fs.listStatus(self._path(location))]

    def read(self, location: str) -> str:
        stream = self._fs.open(self._path(location))
        try:
            jvm_bytes = stream.readAllBytes()
        finally:
            stream.close()
        return bytes(jvm_bytes).decode("utf-8")

    def rename(self, source: str, target: str) -> bool:
        return bool(self._fs.rename(self._path(source), self._path(target)))


def query_id(spark: SparkSession, checkpoint: str) -> str:
    """The persistent id of the query that owns `checkpoint` (Spark writes it at start)."""
    return str(json.loads(_HadoopFs(spark, checkpoint).read(f"{checkpoint}/metadata"))["id"])


def started_query_id(spark: SparkSession, checkpoint: str) -> str | None:
    """The persistent query id of `checkpoint`, or None when no query has started on it."""
    fs = _HadoopFs(spark, checkpoint)
    if not fs.exists(f"{checkpoint}/metadata"):
        return None
    return query_id(spark, checkpoint)


def _batches(fs: _HadoopFs, folder: str) -> list[int]:
    return sorted(int(n) for n in fs.names(folder) if n.isdigit())


def committed_batches(spark: SparkSession, checkpoint: str) -> list[int]:
    """Ids of the micro-batches this checkpoint recorded as complete."""
    return _batches(_HadoopFs(spark, checkpoint), f"{checkpoint}/commits")


def take_over_stateless(spark: SparkSession, checkpoint: str) -> str | None:
    """Move a stream v1 checkpoint aside; returns its committed Kafka offsets as Spark's
    `startingOffsets` JSON, or None when `checkpoint` is not one.

    A v1 checkpoint has commits but no state, and a stateful query cannot start on it. Its
    offsets say where v1 stopped, so v2 goes on from there (its state seeded from
    `telemetry`) instead of reading the topic again. The old folder stays beside it.
    """
    fs = _HadoopFs(spark, checkpoint)
    commits = _batches(fs, f"{checkpoint}/commits")
    if not commits or fs.exists(f"{checkpoint}/state"):
        return None
    offsets = source_offsets(fs.read(f"{checkpoint}/offsets/{commits[-1]}"))
    aside = f"{checkpoint}.v1-{time.strftime('%Y%m%d%H%M%S')}"
    if not fs.rename(checkpoint, aside):
        raise RuntimeError(f"Could not move the stream v1 checkpoint {checkpoint} to {aside}.")
    log.warning(
        "Took over the stream v1 checkpoint %s (moved to %s): starting at its committed "
        "offsets, battery state seeded from telemetry",
        checkpoint,
        aside,
    )
    return json.dumps(offsets) if offsets else None
