"""The component-notes flow: Kafka -> validate -> classify -> quarantine and compliance alerts.

Each micro-batch is parsed and classified once (the note text must also be readable: not
empty, at most 10 kB, plain text). Rejects are appended to `quarantine` once per batch id;
non-compliant notes -- alerts, bounded control data -- go to the driver and are inserted
into `compliance_alerts` by (car_id, note_id) in one delta-rs MERGE carrying the batch's
application transaction, so a replayed batch changes nothing. Each new alert is then
published to the vehicle-alerts topic and marked, as battery alerts are (the table is the
outbox, reconciled with the topic at start-up). As in the battery flow, the driver follows
the alias and each Python worker loads a version once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import StreamingQuery

from core.config import PitstopConfig
from core.lake import on_commit_conflict
from streaming import tables
from streaming.battery.alert_table import AlertTable, utc_now
from streaming.battery.publisher import (
    compliance_message,
    publish_openings,
    publish_pending,
    reconcile_published,
)
from streaming.delta_appends import release_checkpoint
from streaming.metrics import StreamMetrics
from streaming.model_refs import ModelTracker, ModelUnavailableError
from streaming.notes.classify import (
    classify_notes,
    compliance_alert_rows,
    parse_notes,
    rejected_notes,
)
from streaming.parsing import quarantine_counts, quarantined_by_category
from streaming.query import (
    FlowJob,
    build_context,
    materialise,
    mlflow_client,
    run_side_by_side,
    start_query,
)
from streaming.sources import read_kafka_stream

log = logging.getLogger("pitstop.stream.notes")

NOTES_QUERY_NAME = "component-notes"
_ALERTS_ARROW = to_arrow_schema(tables.COMPLIANCE_ALERT_SCHEMA, timezone="UTC")


@dataclass
class NotesJob(FlowJob):
    """Everything a notes micro-batch needs, built once by the driver."""

    model: ModelTracker
    alerts: AlertTable
    threshold: float = 0.5


def build_notes_job(
    spark: SparkSession,
    cfg: PitstopConfig,
    count_loads: bool = False,
    metrics: StreamMetrics | None = None,
) -> NotesJob:
    """Create the tables, repair the compliance alerts' outbox and resolve the compliance
    model; one sentence when it is missing."""
    client = mlflow_client(cfg)
    name, alias = cfg.mlflow.models.compliance, cfg.mlflow.alias
    try:
        client.get_model_version_by_alias(name, alias)
    except Exception:  # MLflow raises its own types; the hint is what matters
        raise ModelUnavailableError(
            f"No version of model '{name}' has alias '{alias}' in the registry; train one with "
            "`pitstop train compliance`."
        ) from None
    context = build_context(spark, cfg, NOTES_QUERY_NAME, count_loads, metrics)
    alerts = AlertTable(
        context.paths[tables.COMPLIANCE_ALERTS], schema=tables.COMPLIANCE_ALERT_SCHEMA
    )
    if cfg.stream.publish_alerts:
        # Openings a crash left between commit and send, or between send and mark.
        reconcile_published(cfg, alerts)
        publish_pending(cfg, alerts, compliance_message)
    return NotesJob(
        context=context,
        model=ModelTracker(client, name, alias, refresh_seconds=cfg.mlflow.alias_refresh_seconds),
        alerts=alerts,
    )


def process_notes_batch(job: NotesJob, batch: DataFrame, batch_id: int) -> None:
    """Validate, quarantine, classify and alert one micro-batch (replay-safe)."""
    spark = batch.sparkSession
    started = time.monotonic()
    ref = job.model.refresh()
    scored = classify_notes(parse_notes(batch), ref, job.context.target, job.loads)
    metrics = job.context.metrics
    rejected = F.col("reason").isNotNull()
    counts_of = [
        F.count(F.lit(1)).alias("notes"),
        F.count_if(rejected).alias("rejected"),
        F.count_if(F.col("probability") >= job.threshold).alias("flagged"),
        *(quarantine_counts(rejected, F.col("reason")) if metrics is not None else []),
    ]
    notes, counts = materialise(scored, counts_of)
    writes = []
    opened: list[int] = []
    if counts["rejected"]:
        rejects = rejected_notes(notes).coalesce(1)
        writes.append(lambda: job.context.append(spark, rejects, tables.QUARANTINE, batch_id))
    if counts["flagged"]:
        writes.append(lambda: opened.append(_insert_alerts(job, spark, notes, batch_id)))
    try:
        run_side_by_side(spark, writes)
    finally:
        release_checkpoint(notes)
    if metrics is not None:
        metrics.record_quarantined(quarantined_by_category(counts))
        metrics.record_alerts("compliance", sum(opened))
        metrics.record_models([ref])
    log.info(
        "notes batch %d: %d notes, %d rejected, %d non-compliant, %d alert(s) opened, %s v%s, "
        "%.1fs",
        batch_id,
        counts["notes"],
        counts["rejected"],
        counts["flagged"],
        sum(opened),
        ref.name,
        ref.version,
        time.monotonic() - started,
    )


def _insert_alerts(job: NotesJob, spark: SparkSession, notes: DataFrame, batch_id: int) -> int:
    """Insert the batch's new compliance alerts, then publish the openings not yet sent."""
    flagged = notes.where(F.col("probability") >= job.threshold).toPandas()
    alerts = compliance_alert_rows(flagged, job.threshold)
    app_id = job.context.app_id(spark, tables.COMPLIANCE_ALERTS)
    inserted = insert_compliance_alerts(
        job.paths[tables.COMPLIANCE_ALERTS], alerts, app_id, batch_id
    )
    if job.cfg.stream.publish_alerts and not alerts.empty:
        # This batch's openings, or a replayed batch's that a crash left unsent. Filtered
        # here, not by an `alert_id IN (...)` query: delta-rs overflows its stack (SIGSEGV)
        # on the ~100k ids one micro-batch of a notes backlog opens.
        unsent = job.alerts.unpublished()
        pending = unsent[unsent["alert_id"].isin(alerts["alert_id"])].reset_index(drop=True)
        publish_openings(job.cfg, pending, job.alerts, compliance_message)
    return inserted


@on_commit_conflict
def insert_compliance_alerts(
    location: str, alerts: pd.DataFrame, app_id: str, batch_id: int
) -> int:
    """Insert alerts whose (car_id, note_id) is not stored yet, once per (app_id, batch_id),
    open and not yet published; returns the rows inserted."""
    from deltalake import CommitProperties, DeltaTable, Transaction

    table = DeltaTable(location)
    committed = table.transaction_version(app_id)
    if alerts.empty or (committed is not None and committed >= batch_id):
        return 0
    now = utc_now()
    rows = alerts.assign(
        created_at=now,
        status="open",
        updated_at=now,
        closed_at=None,
        close_reason=None,
        published_at=None,
    )
    source = pa.Table.from_pandas(rows, schema=_ALERTS_ARROW, preserve_index=False)
    metrics = (
        table.merge(
            source,
            "t.car_id = s.car_id AND t.note_id = s.note_id",
            source_alias="s",
            target_alias="t",
            streamed_exec=False,
            commit_properties=CommitProperties(app_transactions=[Transaction(app_id, batch_id)]),
        )
        .when_not_matched_insert({c: f"s.{c}" for c in _ALERTS_ARROW.names})
        .execute()
    )
    return int(metrics.get("num_target_rows_inserted", 0))


def start_notes_query(
    spark: SparkSession, job: NotesJob, available_now: bool = False
) -> StreamingQuery:
    """Start the component-notes query (Kafka -> foreachBatch -> Delta), own checkpoint."""
    cfg = job.cfg
    return start_query(
        read_kafka_stream(spark, cfg, cfg.kafka.topics.notes),
        job.context,
        cfg.storage.checkpoint(NOTES_QUERY_NAME),
        partial(process_notes_batch, job),
        cfg.stream.trigger_seconds,
        available_now,
    )
