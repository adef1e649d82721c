"""The battery flow: Kafka (or a recording) -> state -> score -> Delta tables and alerts.

The query is read -> parse -> battery history in state (one stateful step) -> foreachBatch.
Each micro-batch then runs, in this order:

1. models     the versions the aliases point at (asked at most every alias_refresh_seconds)
2. score      every new reading's forecast by each model, from the window state emitted
3. compute    the batch once (one Spark job), its counts observed on the way
4. sinks      side by side: telemetry, quarantine and forecasts appends (once per batch id);
              the alert changes planned on the driver from the batch's few alert signals,
              one delta-rs MERGE, then the openings published to the alerts topic

Every write is idempotent per micro-batch, so a job killed at any point and restarted from
its checkpoint loses nothing and duplicates nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from core.config import PitstopConfig
from streaming import checkpoints, tables
from streaming.battery import outputs
from streaming.battery.alert_table import AlertTable, commit_alert_plan
from streaming.battery.alerts import alerts_from_triggers
from streaming.battery.history import HistoryRules
from streaming.battery.publisher import publish_openings, publish_pending, reconcile_published
from streaming.battery.readings import battery_history, parse_telemetry, seed_rows
from streaming.battery.scoring import score_readings
from streaming.delta_appends import first_marked_version, release_checkpoint
from streaming.metrics import StreamMetrics
from streaming.model_refs import ModelRef, ModelTracker, PinnedModel
from streaming.parsing import quarantined_by_category
from streaming.query import (
    FlowJob,
    build_context,
    materialise,
    mlflow_client,
    run_side_by_side,
    sink_app_id,
    start_query,
)
from streaming.sources import read_kafka_stream

log = logging.getLogger("pitstop.stream")


@dataclass
class BatteryJob(FlowJob):
    """Everything a battery micro-batch needs, built once by the driver."""

    champion: ModelTracker | PinnedModel
    alerts: AlertTable
    shadows: list[ModelTracker] = field(default_factory=list)

    @property
    def rules(self) -> HistoryRules:
        return HistoryRules(self.cfg.forecast.window_days, self.cfg.stream.late_after_days)

    def models(self) -> list[ModelRef]:
        """The champion and shadow versions for the next micro-batch."""
        return [self.champion.refresh(), *(shadow.refresh() for shadow in self.shadows)]


def build_job(
    spark: SparkSession,
    cfg: PitstopConfig,
    count_loads: bool = False,
    model_uri: str | None = None,
    metrics: StreamMetrics | None = None,
) -> BatteryJob:
    """Create the tables, repair the alert outbox and resolve the models (one sentence when
    one is missing). `model_uri` pins the forecaster (replay, batch scoring); `metrics`
    receives each batch's counts."""
    client = mlflow_client(cfg)
    context = build_context(spark, cfg, cfg.stream.query_name, count_loads, metrics)
    alerts = AlertTable(context.paths[tables.ALERTS])
    if cfg.stream.publish_alerts:
        # Openings a crash left between commit and send, or between send and mark.
        reconcile_published(cfg, alerts)
        publish_pending(cfg, alerts)
    refresh = cfg.mlflow.alias_refresh_seconds
    return BatteryJob(
        context=context,
        champion=(
            PinnedModel(client, model_uri)
            if model_uri
            else ModelTracker(client, cfg.forecast.model, cfg.mlflow.alias, refresh_seconds=refresh)
        ),
        alerts=alerts,
        shadows=[
            ModelTracker(client, name, cfg.mlflow.alias, role="shadow", refresh_seconds=refresh)
            for name in cfg.forecast.shadow_models
        ],
    )


def battery_query(
    spark: SparkSession,
    job: BatteryJob,
    messages: DataFrame,
    checkpoint: str,
    available_now: bool = False,
) -> StreamingQuery:
    """Start read (`messages`: Kafka-shaped rows) -> state -> foreachBatch as the job's query."""
    seed = None
    if not checkpoints.committed_batches(spark, checkpoint):
        # A new checkpoint: batteries already stored start from what telemetry holds.
        telemetry = telemetry_before(spark, job, checkpoint)
        if not telemetry.isEmpty():
            seed = seed_rows(telemetry, job.rules)
    decided = battery_history(
        parse_telemetry(messages), job.rules, job.cfg.stream.state_ttl_days, seed
    )
    return start_query(
        decided,
        job.context,
        checkpoint,
        partial(process_battery_batch, job),
        job.cfg.stream.trigger_seconds,
        available_now,
    )


def telemetry_before(spark: SparkSession, job: BatteryJob, checkpoint: str) -> DataFrame:
    """`telemetry` as it was before the query of `checkpoint` first appended to it.

    A checkpoint with no committed batch may still have written: a run killed after its
    first micro-batch's telemetry append, before Spark recorded the batch. Its restart
    replays that batch; seeded with the batch's own readings, the state would judge them
    against themselves -- quarantined as late or duplicate, skipped as stored, their
    forecasts never written. So the seed is the table from before that append.
    """
    path = job.paths[tables.TELEMETRY]
    reader = spark.read.format("delta")
    query_id = checkpoints.started_query_id(spark, checkpoint)
    first = (
        None
        if query_id is None
        else first_marked_version(spark, path, sink_app_id(query_id, tables.TELEMETRY))
    )
    if first is None:
        return reader.load(path)
    if first == 0:  # its append created the table: nothing was stored before it
        return reader.load(path).limit(0)
    log.warning(
        "Checkpoint %s has no committed batch but wrote telemetry version %d: seeding the "
        "state from version %d, before its first write",
        checkpoint,
        first,
        first - 1,
    )
    return reader.option("versionAsOf", first - 1).load(path)


def start_battery_query(
    spark: SparkSession, job: BatteryJob, available_now: bool = False
) -> StreamingQuery:
    """Start the battery-telemetry query from Kafka (taking over a stream v1 checkpoint)."""
    cfg = job.cfg
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)
    starting = checkpoints.take_over_stateless(spark, checkpoint)
    messages = read_kafka_stream(spark, cfg, cfg.kafka.topics.telemetry, starting)
    return battery_query(spark, job, messages, checkpoint, available_now)


def process_battery_batch(job: BatteryJob, decided: DataFrame, batch_id: int) -> None:
    """Score, store and alert one micro-batch of decided rows (replay-safe)."""
    spark = decided.sparkSession
    started = time.monotonic()
    refs = job.models()
    scored = score_readings(decided, refs, job.context.target, job.loads)
    forecast = job.cfg.forecast
    metrics = job.context.metrics
    counts_of = outputs.batch_counts(
        forecast.alert_within_days, forecast.alert_margin_days, metrics is not None
    )
    batch, counts = materialise(scored, counts_of)
    changed: list[tuple[int, int]] = []  # (opened, closed) by the alert sink
    try:
        run_side_by_side(spark, _sinks(job, spark, batch, counts, batch_id, changed))
    finally:
        release_checkpoint(batch)
    opened = [n for n, _ in changed]
    if metrics is not None:
        metrics.record_latency(counts.get("arrivals"), time.time())
        metrics.record_quarantined(quarantined_by_category(counts))
        metrics.record_alerts("battery", sum(opened), sum(c for _, c in changed))
        metrics.record_models(refs)
    log.info(
        "batch %d: %d messages, %d new readings, %d rejected, %d already stored, "
        "%d alert(s) opened, %s, %.1fs",
        batch_id,
        counts["messages"],
        counts["new"],
        counts["rejected"],
        counts["stored"],
        sum(opened),
        ", ".join(f"{r.name} v{r.version}" for r in refs),
        time.monotonic() - started,
    )


def _sinks(
    job: BatteryJob,
    spark: SparkSession,
    batch: DataFrame,
    counts: dict[str, int],
    batch_id: int,
    changed: list[tuple[int, int]],
) -> list:
    """The writes this batch needs; a sink with nothing to write is no commit at all."""
    context = job.context
    # Small batches write one file per table; a backlog batch keeps its partitions (cores).
    single = counts["messages"] < 50_000

    def append(sink: str, rows: DataFrame):
        rows = rows.coalesce(1) if single else rows
        return lambda: context.append(spark, rows, sink, batch_id)

    writes = []
    if counts["new"]:
        writes.append(append(tables.TELEMETRY, outputs.telemetry_rows(batch, batch_id)))
    if counts["rejected"]:
        writes.append(append(tables.QUARANTINE, outputs.quarantine_rows(batch)))
    if counts["forecasts"]:
        writes.append(append(tables.FORECASTS, outputs.forecast_rows(batch)))
    if counts["signals"]:
        writes.append(lambda: changed.append(update_alerts(job, spark, batch, batch_id)))
    return writes


def update_alerts(
    job: BatteryJob, spark: SparkSession, batch: DataFrame, batch_id: int
) -> tuple[int, int]:
    """Plan and commit the batch's alert changes from its signals; publish what opened.

    Returns the alerts opened and closed."""
    forecast = job.cfg.forecast
    signals = outputs.alert_signals(
        batch, forecast.alert_within_days, forecast.alert_margin_days
    ).toPandas()
    found = alerts_from_triggers(signals[signals["trigger"]])
    arrivals = signals.loc[~signals["trigger"], ["car_id", "battery_id", "date"]]
    app_id = job.context.app_id(spark, tables.ALERTS)
    changes = commit_alert_plan(job.alerts, found, arrivals, app_id, batch_id)
    if job.cfg.stream.publish_alerts:
        publish_openings(job.cfg, changes.openings, job.alerts)
    return len(changes.openings), changes.closed


def score_recording(job: BatteryJob, messages: DataFrame) -> None:
    """The stream's steps over a batch of Kafka-shaped rows, as micro-batch 0 (backfills)."""
    decided = battery_history(parse_telemetry(messages), job.rules, job.cfg.stream.state_ttl_days)
    process_battery_batch(job, decided, 0)
