"""Recorded readings (JSONL of wire messages, or the lab's CSV) as Kafka-shaped rows.

Replay and batch scoring feed these rows into the very same parse/validate/score code as
the Kafka stream, so a recorded file behaves exactly like the topic it was recorded from.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from core.contract import LAB_CSV_COLUMNS, SCHEMA_VERSION, TELEMETRY_FIELDS
from core.errors import PitstopError

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
CSV_SUFFIXES = (".csv",)


class RecordingError(PitstopError):
    """A recorded input cannot be read."""


def recording_kind(path: Path) -> str:
    """'jsonl' or 'csv' for a recorded file, or for the files of a folder."""
    files = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.is_file())
    suffixes = {p.suffix.lower() for p in files}
    if files and suffixes <= set(JSONL_SUFFIXES):
        return "jsonl"
    if files and suffixes <= set(CSV_SUFFIXES):
        return "csv"
    if path.is_dir() and (path / "battery-telemetry.jsonl").exists():
        return "jsonl"
    raise RecordingError(
        f"{path} is neither JSONL wire messages nor a CSV in the lab's schema "
        "(expected .jsonl/.json or .csv files)."
    )


def read_recording(spark: SparkSession, source: str, kind: str, streaming: bool) -> DataFrame:
    """Kafka-shaped rows (key, value, topic, partition, offset, timestamp) from a recording.

    `source` is a folder (streaming reads every file in it) or a file (batch). Files have no
    offsets, so a row's "offset" is a hash of its content within its file ("topic"): stable
    across runs, and identical lines are duplicates anyway.
    """
    reader = spark.readStream if streaming else spark.read
    if kind == "jsonl":
        frame = reader.format("text").load(source)
        value = F.col("value").cast("binary")
        key = F.get_json_object("value", "$.battery_id")
    elif kind == "csv":
        schema = ", ".join(f"`{c}` string" for c in _csv_header(spark, source))
        frame = reader.format("csv").option("header", "true").schema(schema).load(source)
        frame = _lab_columns(frame)
        value = F.to_json(F.struct(*frame.columns)).cast("binary")
        key = F.col("battery_id")
    else:
        raise RecordingError(f"Unknown recording kind {kind!r}.")
    return frame.select(
        key.cast("binary").alias("key"),
        value.alias("value"),
        F.concat(F.lit("file:"), F.input_file_name()).alias("topic"),
        F.lit(0).alias("partition"),
        F.xxhash64(value).alias("offset"),
        F.current_timestamp().alias("timestamp"),
    )


def _csv_header(spark: SparkSession, source: str) -> list[str]:
    """The CSV's column names (the lab's file sometimes starts with an unnamed index column)."""
    first = spark.read.format("text").load(source).limit(1).collect()
    if not first:
        raise RecordingError(f"{source} is empty.")
    names = [
        name.strip().strip('"') or f"_c{i}" for i, name in enumerate(first[0].value.split(","))
    ]
    missing = [c for c in LAB_CSV_COLUMNS if c not in names]
    if missing:
        raise RecordingError(
            f"{source} is missing the lab column(s) {', '.join(missing)}; expected "
            f"{', '.join(LAB_CSV_COLUMNS)}."
        )
    return names


def _lab_columns(frame: DataFrame) -> DataFrame:
    """The lab's CSV columns -> contract fields (the same mapping as core.contract)."""
    types = {f.name: f.type for f in TELEMETRY_FIELDS}
    columns: list[Column] = [F.lit(SCHEMA_VERSION).alias("schema_version")]
    for lab, field in LAB_CSV_COLUMNS.items():
        raw = F.trim(F.col(f"`{lab}`"))
        if field == "battery_id":
            # The lab's ids are integers ("12" or "12.0"); the contract carries strings.
            value = F.regexp_replace(raw, r"\.0+$", "")
        elif field == "date":
            value = F.date_format(F.expr(f"try_to_date(trim(`{lab}`))"), "yyyy-MM-dd")
        elif types[field] in ("int", "float"):
            # A value that is not a number becomes null and is quarantined by the validator.
            value = F.expr(f"try_cast(trim(`{lab}`) AS double)")
        else:
            value = raw
        columns.append(value.alias(field))
    frame = frame.select(*columns)
    return frame.withColumn("car_id", F.concat(F.lit("car-"), F.col("battery_id")))


def messages_from_rows(rows: DataFrame, source: str) -> DataFrame:
    """Readings in contract columns (stored telemetry, a DataFrame of a fleet) back as
    Kafka-shaped wire messages from `source`, so they pass the same validation."""
    fields = [
        F.date_format("date", "yyyy-MM-dd").alias("date")
        if f.name == "date"
        else F.lit(SCHEMA_VERSION).alias(f.name)
        if f.name == "schema_version" and f.name not in rows.columns
        else F.col(f.name)
        for f in TELEMETRY_FIELDS
        if f.name in rows.columns or f.name == "schema_version"
    ]
    return rows.select(
        F.col("battery_id").cast("binary").alias("key"),
        F.to_json(F.struct(*fields)).cast("binary").alias("value"),
        F.lit(source).alias("topic"),
        F.lit(0).alias("partition"),
        F.monotonically_increasing_id().alias("offset"),
        F.current_timestamp().alias("timestamp"),
    )
