"""Component notes from Kafka rows to classified rows: parse, check the text, score it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.validation import Checked, check_note
from streaming.model_refs import ModelRef, RegistryTarget, cached_model
from streaming.parsing import ENVELOPE_FIELDS, parse_messages, quarantine_rows

PARSED_NOTES_SCHEMA = T.StructType(
    [
        T.StructField("note_id", T.StringType()),
        T.StructField("car_id", T.StringType()),
        T.StructField("component", T.StringType()),
        T.StructField("text", T.StringType()),
        T.StructField("written_at", T.TimestampType()),
        *ENVELOPE_FIELDS,
    ]
)

# A classified note: the parsed message, and for a readable one its probability of
# non-compliance and the model that gave it (null for a rejected message).
SCORED_NOTES_SCHEMA = T.StructType(
    PARSED_NOTES_SCHEMA.fields
    + [
        T.StructField("probability", T.DoubleType()),
        T.StructField("model_name", T.StringType()),
        T.StructField("model_version", T.StringType()),
    ]
)


def _check_note(value: bytes | None) -> Checked:
    """The contract's checks, then the classifier's own: empty, huge or non-text notes."""
    from models.compliance.text import note_text_problem

    checked = check_note(value)
    if checked.ok:
        problem = note_text_problem(checked.fields["text"])
        if problem is not None:
            return Checked(None, None, problem)
    return checked


def parse_notes(kafka_rows: DataFrame) -> DataFrame:
    """Kafka rows -> one row per note: contract fields, or a quarantine `reason`."""
    return parse_messages(kafka_rows, _check_note, PARSED_NOTES_SCHEMA)


def rejected_notes(parsed: DataFrame) -> DataFrame:
    """Notes that break the contract or cannot be read, in quarantine's columns."""
    return quarantine_rows(parsed).withColumn("ingested_at", F.current_timestamp())


def _load_classifier(uri: str) -> Any:
    from models.compliance.pyfunc import load_compliance_classifier

    return load_compliance_classifier(uri, torch_threads=1)


def classify_notes(
    parsed: DataFrame, ref: ModelRef, target: RegistryTarget, loads: Accumulator | None = None
) -> DataFrame:
    """Every parsed note; readable ones get `probability` of non-compliance and the model."""

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            readable = batch["reason"].isna()
            batch["probability"] = float("nan")
            batch["model_name"] = None
            batch["model_version"] = None
            if readable.any():
                model = cached_model(ref, target, loads, _load_classifier)
                texts = batch.loc[readable, "text"].tolist()
                batch.loc[readable, "probability"] = model.predict_proba(texts)
                batch.loc[readable, "model_name"] = ref.name
                batch.loc[readable, "model_version"] = ref.version
            yield batch

    return parsed.mapInPandas(score, SCORED_NOTES_SCHEMA)


# What a note's classification decides of its alert; the lifecycle columns are the sink's.
ALERT_SOURCE_COLUMNS = (
    "car_id",
    "note_id",
    "component",
    "text",
    "probability",
    "written_at",
    "model_name",
    "model_version",
)


def compliance_alert_id(car_id: str, note_id: str) -> str:
    """A compliance alert's id: its note (car and note id), 16 hex characters."""
    return hashlib.sha256(f"{car_id}|{note_id}".encode()).hexdigest()[:16]


def compliance_alert_rows(scored: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Non-compliant notes as alerts (ALERT_SOURCE_COLUMNS and `alert_id`), one row per
    (car_id, note_id): the lowest offset wins a note sent twice (a deterministic MERGE)."""
    flagged = scored[scored["probability"].notna() & (scored["probability"] >= threshold)]
    flagged = flagged.sort_values(["car_id", "note_id", "topic", "partition", "offset"])
    rows = flagged.drop_duplicates(["car_id", "note_id"])[list(ALERT_SOURCE_COLUMNS)]
    ids = [compliance_alert_id(c, n) for c, n in zip(rows["car_id"], rows["note_id"], strict=True)]
    return rows.assign(alert_id=ids).reset_index(drop=True)
