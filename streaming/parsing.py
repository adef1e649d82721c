"""Kafka messages -> checked rows or quarantine rows: the first step of every flow."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from core.reasons import CATEGORIES, OTHER, REASON_CATEGORIES
from core.validation import Checked
from streaming.worker_heap import freeze_long_lived

KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")

# Kafka's envelope beside a message's checked fields: where it came from, its raw bytes and,
# for a message that breaks the contract, why.
ENVELOPE_FIELDS = [
    T.StructField("key", T.StringType()),
    T.StructField("payload", T.BinaryType()),
    T.StructField("reason", T.StringType()),
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("kafka_timestamp", T.TimestampType()),
]

_ENVELOPE = tuple(f.name for f in ENVELOPE_FIELDS)
QUARANTINED_PREFIX = "quarantined_"


def parse_messages(
    kafka_rows: DataFrame, check: Callable[[bytes | None], Checked], schema: T.StructType
) -> DataFrame:
    """Kafka rows -> one row per message in `schema`: checked fields, or a quarantine `reason`.

    `schema` holds the message's fields, Kafka's envelope (key, payload, reason, topic,
    partition, offset, kafka_timestamp) and optionally `extra` (unknown fields as JSON).
    Arrow in, Arrow out: the envelope passes through untouched and only the values are
    checked in Python -- through pandas this step cost ~8x more per message.
    """
    missing = [c for c in KAFKA_COLUMNS if c not in kafka_rows.columns]
    if missing:
        raise ValueError(f"Parsing messages needs the Kafka columns {', '.join(missing)}.")
    arrow_schema = to_arrow_schema(schema, timezone="UTC")
    names = schema.fieldNames()
    fields = [n for n in names if n not in _ENVELOPE and n != "extra"]

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        freeze_long_lived()
        for batch in batches:
            payloads = batch.column("value").to_pylist()
            columns: dict[str, list] = {name: [] for name in [*fields, "extra", "reason"]}
            for value in payloads:
                checked = check(value)
                values = checked.fields or {}
                for name in fields:
                    columns[name].append(values.get(name))
                columns["extra"].append(json.dumps(checked.extra) if checked.extra else None)
                columns["reason"].append(checked.reason)
            arrays = {
                "key": pa.array(
                    [_decode_key(k) for k in batch.column("key").to_pylist()], pa.string()
                ),
                "payload": batch.column("value"),
                "topic": batch.column("topic"),
                "partition": batch.column("partition"),
                "offset": batch.column("offset"),
                "kafka_timestamp": batch.column("timestamp"),
            }
            yield pa.RecordBatch.from_arrays(
                [
                    _arrow_column(arrays.get(f.name), columns.get(f.name), f.type)
                    for f in arrow_schema
                ],
                schema=arrow_schema,
            )

    return kafka_rows.select(*KAFKA_COLUMNS).mapInArrow(parse, schema)


def _arrow_column(array, values: list | None, kind: pa.DataType) -> pa.Array:
    """An envelope column cast to its field's type, or a parsed field from Python values."""
    if array is not None:
        return array if array.type == kind else pc.cast(array, kind)
    return pa.array(values, type=kind)


def _decode_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    return bytes(key).decode("utf-8", errors="replace")


def quarantine_rows(parsed: DataFrame) -> DataFrame:
    """Rows that break the contract, with raw payload and reason (quarantine's columns)."""
    return parsed.where(F.col("reason").isNotNull()).select(
        F.col("topic").alias("source"),
        "key",
        "payload",
        F.col("payload").cast("string").alias("payload_text"),
        "reason",
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
    )


def reason_category(reason: Column) -> Column:
    """The category (`core.reasons`) of a quarantine reason column, as Spark computes it."""
    category = F.lit(OTHER)
    for name, pattern in reversed(REASON_CATEGORIES):
        category = F.when(reason.rlike(pattern), F.lit(name)).otherwise(category)
    return category


def quarantine_counts(rejected: Column, reason: Column) -> list[Column]:
    """Observed per micro-batch: rejected messages per reason category, `quarantined_<name>`
    (aggregates for `DataFrame.observe`, so the metrics cost no Spark action)."""
    category = reason_category(reason)
    return [
        F.count_if(rejected & (category == name)).alias(f"{QUARANTINED_PREFIX}{name}")
        for name in CATEGORIES
    ]


def quarantined_by_category(counts: dict[str, object]) -> dict[str, int]:
    """category -> messages, from the observed counts of `quarantine_counts` (zeros left out)."""
    return {
        key.removeprefix(QUARANTINED_PREFIX): int(value)
        for key, value in counts.items()
        if key.startswith(QUARANTINED_PREFIX) and value
    }
