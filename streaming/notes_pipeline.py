"""The component-notes stream: Kafka -> validate -> classify -> Delta `compliance_alerts`.

Each micro-batch is validated against the contract (and the note text must be readable:
not empty, at most 10 kB, plain text); rejects are appended to `quarantine` once per batch
(txnAppId/txnVersion), the rest are classified by the registered compliance model, and
non-compliant notes are inserted into `compliance_alerts` by (car_id, note_id) — an
insert-only MERGE from a batch deduplicated on that key, so a replayed batch changes
nothing. As in the battery job, the driver resolves the alias every micro-batch and each
Python worker loads a version once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pyspark import Accumulator
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from pitstop.config import PitstopConfig
from pitstop.validation import Checked, check_note
from streaming import sinks, tables, transforms
from streaming.scoring import (
    ModelRef,
    ModelTracker,
    ModelUnavailableError,
    RegistryTarget,
    cached_model,
)
from streaming.sources import read_kafka_stream

log = logging.getLogger("pitstop.stream.notes")

NOTES_QUERY_NAME = "component-notes"

PARSED_NOTES_SCHEMA = T.StructType(
    [
        T.StructField("note_id", T.StringType()),
        T.StructField("car_id", T.StringType()),
        T.StructField("component", T.StringType()),
        T.StructField("text", T.StringType()),
        T.StructField("written_at", T.TimestampType()),
        T.StructField("key", T.StringType()),
        T.StructField("payload", T.BinaryType()),
        T.StructField("reason", T.StringType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("kafka_timestamp", T.TimestampType()),
    ]
)

_NOTE_COLUMNS = [
    f.name for f in PARSED_NOTES_SCHEMA.fields if f.name not in ("key", "payload", "reason")
]

SCORED_NOTES_SCHEMA = T.StructType(
    [PARSED_NOTES_SCHEMA[name] for name in _NOTE_COLUMNS]
    + [
        T.StructField("probability", T.DoubleType()),
        T.StructField("model_name", T.StringType()),
        T.StructField("model_version", T.StringType()),
    ]
)


@dataclass
class NotesJob:
    """Everything a notes micro-batch needs, built once by the driver."""

    cfg: PitstopConfig
    paths: dict[str, str]
    model: ModelTracker
    target: RegistryTarget
    loads: Accumulator | None = None
    query_name: str = NOTES_QUERY_NAME
    threshold: float = 0.5
    app_ids: dict[str, str] = field(default_factory=dict)

    def app_id(self, spark: SparkSession, sink: str) -> str:
        """A txnAppId stable across restarts of this checkpoint: the query's persistent id."""
        if sink not in self.app_ids:
            query_id = next(
                (str(q.id) for q in spark.streams.active if q.name == self.query_name),
                self.query_name,
            )
            self.app_ids[sink] = f"pitstop-{query_id}-{sink}"
        return self.app_ids[sink]


def build_notes_job(spark: SparkSession, cfg: PitstopConfig, count_loads: bool = False) -> NotesJob:
    """Create the tables and resolve the compliance model; one sentence when it is missing."""
    from mlflow import MlflowClient

    from models.registry import configure_mlflow

    configure_mlflow(cfg)
    client = MlflowClient(
        tracking_uri=cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.registry_uri
    )
    name, alias = cfg.mlflow.models.compliance, cfg.mlflow.alias
    try:
        client.get_model_version_by_alias(name, alias)
    except Exception:  # MLflow raises its own types; the hint is what matters
        raise ModelUnavailableError(
            f"No version of model '{name}' has alias '{alias}' in the registry; train one with "
            "`pitstop train compliance`."
        ) from None
    return NotesJob(
        cfg=cfg,
        paths=tables.ensure_tables(spark, cfg),
        model=ModelTracker(client, name, alias),
        target=RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri),
        loads=spark.sparkContext.accumulator(0) if count_loads else None,
    )


# --- validate ------------------------------------------------------------------------------


def _check_note(value: bytes | None) -> Checked:
    """The contract's checks, then the classifier's own: empty, huge or non-text notes."""
    from models.compliance import note_text_problem

    checked = check_note(value)
    if checked.ok:
        problem = note_text_problem(checked.fields["text"])
        if problem is not None:
            return Checked(None, None, problem)
    return checked


def parse_notes(kafka_rows: DataFrame) -> DataFrame:
    """Kafka rows -> one row per note: contract fields, or a quarantine `reason`."""
    return transforms.parse_messages(kafka_rows, _check_note, PARSED_NOTES_SCHEMA)


def rejected_notes(parsed: DataFrame) -> DataFrame:
    """Notes that break the contract or cannot be read, in quarantine's columns."""
    return transforms.quarantine_rows(parsed).withColumn("ingested_at", F.current_timestamp())


def valid_notes(parsed: DataFrame) -> DataFrame:
    """Readable notes, ready to classify."""
    return parsed.where(F.col("reason").isNull()).drop("reason", "key", "payload")


# --- classify ------------------------------------------------------------------------------


def _classifier(ref: ModelRef, target: RegistryTarget, loads: Accumulator | None) -> Any:
    return cached_model(ref, target, loads, _load_classifier)


def _load_classifier(uri: str) -> Any:
    from models.compliance_pyfunc import load_compliance_classifier

    return load_compliance_classifier(uri, torch_threads=1)


def classify_notes(
    notes: DataFrame, ref: ModelRef, target: RegistryTarget, loads: Accumulator | None = None
) -> DataFrame:
    """Add `probability` of non-compliance and the model's name and version to each note."""
    keep = _NOTE_COLUMNS

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            model = _classifier(ref, target, loads)
            out = batch[keep].reset_index(drop=True)
            out["probability"] = model.predict_proba(out["text"].tolist())
            out["model_name"] = ref.name
            out["model_version"] = ref.version
            yield out

    return notes.select(*keep).mapInPandas(score, SCORED_NOTES_SCHEMA)


def compliance_alert_rows(scored: DataFrame, threshold: float = 0.5) -> DataFrame:
    """Non-compliant notes in `compliance_alerts`' columns (created_at is set on insert).

    One row per (car_id, note_id): the lowest offset wins a note sent twice, which keeps
    the MERGE deterministic.
    """
    first = Window.partitionBy("car_id", "note_id").orderBy("topic", "partition", "offset")
    return (
        scored.where(F.col("probability") >= threshold)
        .withColumn("_rank", F.row_number().over(first))
        .where("_rank = 1")
        .select(*[c for c in tables.COMPLIANCE_ALERT_SCHEMA.fieldNames() if c != "created_at"])
    )


# --- write ---------------------------------------------------------------------------------


def merge_compliance_alerts(spark: SparkSession, alerts: DataFrame, path: str) -> None:
    """Insert alerts whose (car_id, note_id) is not in the table yet; existing ones stay."""
    from delta.tables import DeltaTable

    values = {c: F.col(f"s.{c}") for c in alerts.columns}
    values["created_at"] = F.current_timestamp()
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(alerts.alias("s"), "t.car_id = s.car_id AND t.note_id = s.note_id")
        .whenNotMatchedInsert(values=values)
        .execute()
    )


def process_notes_batch(job: NotesJob, batch: DataFrame, batch_id: int) -> None:
    """Validate, quarantine, classify and alert one micro-batch (replay-safe)."""
    spark = batch.sparkSession
    started = time.monotonic()
    ref = job.model.refresh()
    # Local checkpoints, not persist(): Delta's MERGE re-plans its source and ignores the
    # cache, which parsed and classified every note twice; a checkpoint cuts the lineage.
    parsed = parse_notes(batch).withColumn("ingested_at", F.current_timestamp()).localCheckpoint()
    rejected = rejected_notes(parsed)
    # A Delta commit costs ~1.5 s; a clean batch has nothing to quarantine, and a replay of
    # it is just as clean, so skipping the empty append keeps the write idempotent.
    if not rejected.isEmpty():
        sinks.append_once(
            rejected, job.paths[tables.QUARANTINE], job.app_id(spark, tables.QUARANTINE), batch_id
        )
    scored = classify_notes(valid_notes(parsed), ref, job.target, job.loads).localCheckpoint()
    alerts = compliance_alert_rows(scored, job.threshold)
    merge_compliance_alerts(spark, alerts, job.paths[tables.COMPLIANCE_ALERTS])
    if log.isEnabledFor(logging.INFO):
        log.info(
            "notes batch %d: %d notes, %d classified, %d non-compliant, %s v%s, %.1fs",
            batch_id,
            parsed.count(),
            scored.count(),
            scored.where(F.col("probability") >= job.threshold).count(),
            ref.name,
            ref.version,
            time.monotonic() - started,
        )


def start_notes_query(
    spark: SparkSession, job: NotesJob, available_now: bool = False
) -> StreamingQuery:
    """Start the component-notes query (Kafka -> foreachBatch -> Delta), own checkpoint."""
    cfg = job.cfg
    stream = read_kafka_stream(spark, cfg, cfg.kafka.topics.notes)
    writer = (
        stream.writeStream.queryName(job.query_name)
        .option("checkpointLocation", cfg.storage.checkpoint(job.query_name))
        .foreachBatch(lambda frame, batch_id: process_notes_batch(job, frame, batch_id))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{cfg.stream.trigger_seconds} seconds")
    return writer.start()
