"""Battery readings from Kafka rows to decided rows: parse, key, keep history in state.

`battery_history` is the stream's one stateful step: Kafka rows in, every message out once
with its fate (new, rejected, stored) and, for a new reading, its model window. It runs the
same way in a streaming query (state in the checkpoint) and on a batch DataFrame (state for
that batch only), so a replay, a batch score and the broker-fed stream decide alike.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.validation import check_telemetry
from models.forecasting.features import HEALTH_COLUMNS
from streaming.battery.history import QUARANTINE_KEY, HistoryRules
from streaming.parsing import ENVELOPE_FIELDS, parse_messages
from streaming.tables import READING_SCHEMA

PARSED_SCHEMA = T.StructType(
    [T.StructField(f.name, f.dataType, True) for f in READING_SCHEMA.fields] + ENVELOPE_FIELDS
)

# What leaves the state step: the parsed message, its fate, and for a new reading the first
# day of its window and the stored days in it (packed: models.forecasting.features.WINDOW_DAY).
HISTORY_SCHEMA = T.StructType(
    PARSED_SCHEMA.fields
    + [
        T.StructField("fate", T.StringType()),
        T.StructField("first_seen", T.BooleanType()),
        T.StructField("window_start", T.IntegerType()),
        T.StructField("window", T.BinaryType()),
    ]
)

_KEY, _SOURCE = "_key", "_source"


def parse_telemetry(kafka_rows: DataFrame) -> DataFrame:
    """Kafka rows -> one row per message: typed contract fields, or a quarantine `reason`."""
    return parse_messages(kafka_rows, check_telemetry, PARSED_SCHEMA)


def record_hash(topic="topic", partition="partition", offset="offset"):
    """A record's identity (its source position) as one long: how state recognises it."""
    return F.xxhash64(F.col(topic), F.col(partition), F.col(offset))


def history_input(parsed: DataFrame) -> DataFrame:
    """Parsed rows keyed by battery (rejects under one key of their own) for the state step.

    A valid reading's raw payload is dropped here: its fields are all in the row.
    """
    valid = F.col("reason").isNull()
    return parsed.select(
        F.when(valid, F.col("battery_id")).otherwise(F.lit(QUARANTINE_KEY)).alias(_KEY),
        record_hash().alias(_SOURCE),
        *[
            F.when(valid, F.lit(None).cast("binary")).otherwise(F.col(c)).alias(c)
            if c == "payload"
            else F.col(c)
            for c in PARSED_SCHEMA.fieldNames()
        ],
    )


def seed_rows(telemetry: DataFrame, rules: HistoryRules) -> DataFrame:
    """Initial state from stored readings: per battery its first day and its last `reach` days.

    Seeds the state of a new checkpoint, so an existing deployment moving to stream v2 (or a
    checkpoint started afresh) judges new readings against what `telemetry` already holds.
    """
    span = telemetry.groupBy("battery_id").agg(
        F.min("date").alias("first_day"), F.max("date").alias("_latest")
    )
    day = F.struct(
        F.col("date"),
        record_hash().alias("source"),
        F.col("daily_cycles_used").alias("cycles"),
        *[F.col(s).cast("double").alias(s) for s in HEALTH_COLUMNS],
    )
    return (
        telemetry.join(span, "battery_id")
        .where(F.col("date") > F.date_sub("_latest", rules.reach))
        .groupBy(F.col("battery_id").alias(_KEY))
        .agg(F.first("first_day").alias("first_day"), F.collect_list(day).alias("days"))
    )


def battery_history(
    parsed: DataFrame,
    rules: HistoryRules,
    ttl_days: float,
    seed: DataFrame | None = None,
) -> DataFrame:
    """Every parsed message once, decided against its battery's state (HISTORY_SCHEMA).

    The state step is `transformWithState` in the JVM (jvm/battery-state): per battery it
    costs microseconds, where PySpark's state API paid a socket round trip to the JVM for
    every state call -- measured, 0.6-1.6 s per 2,000-reading micro-batch against 0.2 s
    (benchmarks/README.md). TTL counts processing time: a battery expires `ttl_days` after
    its last new reading.
    """
    spark = parsed.sparkSession
    keyed = history_input(parsed)
    decided = spark.sparkContext._jvm.pitstop.state.BatteryHistory.decide(
        keyed._jdf,
        HISTORY_SCHEMA.json(),
        rules.window_days,
        rules.late_after_days,
        int(ttl_days * 86_400_000),
        ",".join(HEALTH_COLUMNS),
        seed._jdf if seed is not None else None,
    )
    return DataFrame(decided, spark)
