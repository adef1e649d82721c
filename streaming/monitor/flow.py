"""The forecast accuracy monitor: telemetry (Delta source) -> pairs -> forecast_accuracy.

Its own incremental query beside the stream job, so the alert path's micro-batch stays as
it is: the Delta source on `telemetry` delivers each stored reading once (its checkpoint is
the monitor's progress), and each micro-batch

1. waits, briefly, for the forecasts of readings stored moments ago (the stream commits a
   batch's telemetry and forecasts side by side),
2. reads the forecasts and readings around its own (date range and batteries pushed down to
   the Delta scans) and pairs them (`accuracy.accuracy_pairs`),
3. appends the pairs to `forecast_accuracy` once per batch id (`FlowContext.append`), and
4. checks the champion's live accuracy against its holdout (`health.ChampionWatch`), one
   `model_health` row per check.

A monitor killed at any point and restarted from its checkpoint loses nothing and
duplicates nothing: a replayed batch finds the same pairs and its append is skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from core.config import PitstopConfig
from streaming import tables
from streaming.delta_appends import release_checkpoint
from streaming.monitor.accuracy import (
    FORECAST_COLUMNS,
    MAX_IN_LIST,
    READING_COLUMNS,
    accuracy_pairs,
    missing_forecasts,
    near,
    new_readings,
)
from streaming.monitor.health import ChampionWatch
from streaming.query import FlowJob, build_context, materialise, mlflow_client, start_query

log = logging.getLogger("pitstop.monitor")

# Only readings stored this recently wait for their forecasts: an older reading without one
# was scored by another writer (or not at all), and waiting would not bring it.
_RECENT = dt.timedelta(minutes=10)


@dataclass
class MonitorJob(FlowJob):
    """Everything a monitor micro-batch needs, built once by the driver."""

    watch: ChampionWatch


def build_monitor_job(spark: SparkSession, cfg: PitstopConfig) -> MonitorJob:
    """Create the tables (forecast_accuracy and model_health among them) and the watch."""
    context = build_context(spark, cfg, cfg.monitor.query_name)
    return MonitorJob(context=context, watch=ChampionWatch(cfg, mlflow_client(cfg)))


def start_monitor_query(
    spark: SparkSession, job: MonitorJob, available_now: bool = False
) -> StreamingQuery:
    """Start telemetry (Delta source) -> foreachBatch(pairs) as the monitor's query."""
    cfg = job.cfg
    telemetry = spark.readStream.format("delta").load(job.paths[tables.TELEMETRY])
    return start_query(
        telemetry.select(*READING_COLUMNS),
        job.context,
        cfg.storage.checkpoint(cfg.monitor.query_name),
        partial(process_monitor_batch, job),
        cfg.monitor.trigger_seconds,
        available_now,
    )


def process_monitor_batch(job: MonitorJob, rows: DataFrame, batch_id: int) -> None:
    """Pair a micro-batch of stored readings with the forecasts that covered them (replay-safe)."""
    spark = rows.sparkSession
    started = time.monotonic()
    new, seen = materialise(
        new_readings(rows),
        [
            F.count(F.lit(1)).alias("readings"),
            F.min("date").alias("first"),
            F.max("date").alias("last"),
            F.approx_count_distinct("battery_id").alias("batteries"),
        ],
    )
    try:
        if not seen["readings"]:
            return
        pairs = _pairs(job, spark, new, seen, batch_id)
        job.context.append(spark, pairs, tables.FORECAST_ACCURACY, batch_id)
        health = job.watch.check(seen["last"], batch_id)
        if not health.empty:
            frame = spark.createDataFrame(health, schema=tables.MODEL_HEALTH_SCHEMA)
            job.context.append(spark, frame, tables.MODEL_HEALTH, batch_id)
    finally:
        release_checkpoint(new)
    status = health["status"].iloc[0] if not health.empty else "unknown"
    log.info(
        "monitor batch %d: %d readings %s..%s, champion %s, %.1fs",
        batch_id,
        seen["readings"],
        seen["first"],
        seen["last"],
        status,
        time.monotonic() - started,
    )


def _pairs(
    job: MonitorJob, spark: SparkSession, new: DataFrame, seen: dict, batch_id: int
) -> DataFrame:
    """The batch's accuracy rows, computed once (its forecasts waited for first)."""
    horizon = dt.timedelta(days=job.cfg.forecast.horizon_days)
    first, last = seen["first"], seen["last"]
    batteries = new.select("battery_id").distinct()
    ids = None
    if seen["batteries"] <= MAX_IN_LIST:
        ids = [r.battery_id for r in batteries.collect()]

    def forecasts() -> DataFrame:
        # A new DataFrame each time: Delta pins a DataFrame to the snapshot it was made on.
        table = spark.read.format("delta").load(job.paths[tables.FORECASTS])
        return near(table, batteries, ids, first - horizon, last).select(*FORECAST_COLUMNS)

    found = _await_forecasts(job, new, forecasts)
    telemetry = spark.read.format("delta").load(job.paths[tables.TELEMETRY])
    stored = near(telemetry, batteries, ids, first - horizon, last + horizon)
    return accuracy_pairs(new, stored.select(*READING_COLUMNS), found, batch_id)


def _await_forecasts(job: MonitorJob, new: DataFrame, forecasts) -> DataFrame:
    """`forecasts()` once every recently stored reading of the batch has its forecast, or
    after `monitor.wait_seconds` (then the missing ones are logged and left)."""
    deadline = time.monotonic() + job.cfg.monitor.wait_seconds
    recent = F.lit(dt.datetime.now(dt.timezone.utc) - _RECENT)
    while True:
        found = forecasts()
        missing = missing_forecasts(new, found, recent).count()
        if not missing:
            return found
        if time.monotonic() >= deadline:
            log.warning(
                "%d reading(s) stored recently still have no forecast after %.0f s; "
                "pairing without them",
                missing,
                job.cfg.monitor.wait_seconds,
            )
            return found
        time.sleep(1.0)


def run_monitor(spark: SparkSession, cfg: PitstopConfig, once: bool = False) -> None:
    """Run the monitor until stopped (Ctrl-C), or over what telemetry holds now (`once`)."""
    job = build_monitor_job(spark, cfg)
    query = start_monitor_query(spark, job, available_now=once)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        log.info("Stopping the monitor after the current micro-batch")
        query.stop()
    if query.exception():
        raise RuntimeError(f"The monitor query failed: {query.exception()}")
