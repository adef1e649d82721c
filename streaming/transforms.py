"""Pure Spark transformations of the battery stream: DataFrames in, DataFrames out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from models.features import (
    HEALTH_COLUMNS,
    HEALTH_HISTORY_COLUMNS,
    HEALTH_HISTORY_SUFFIX,
    HISTORY_COLUMN,
    STATIC_COLUMNS,
    build_history_windows,
)
from pitstop.validation import Checked, check_telemetry
from streaming.tables import READING_SCHEMA

KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")

PARSED_SCHEMA = T.StructType(
    [T.StructField(f.name, f.dataType, True) for f in READING_SCHEMA.fields]
    + [
        T.StructField("key", T.StringType()),
        T.StructField("payload", T.BinaryType()),
        T.StructField("reason", T.StringType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("kafka_timestamp", T.TimestampType()),
    ]
)


def window_schema(health: tuple[str, ...] | list[str] = HEALTH_HISTORY_COLUMNS) -> T.StructType:
    """Model input rows: the window, statics, and the `health` history arrays asked for."""
    return T.StructType(
        [
            T.StructField("battery_id", T.StringType()),
            T.StructField("car_id", T.StringType()),
            T.StructField("date", T.DateType()),
            T.StructField(HISTORY_COLUMN, T.ArrayType(T.DoubleType())),
            *[T.StructField(c, T.DoubleType()) for c in STATIC_COLUMNS],
            # Health signals aligned with the history (null where a battery never sent one):
            # optional model inputs, built only for models that read them.
            *[T.StructField(c, T.ArrayType(T.DoubleType())) for c in health],
        ]
    )


_ENVELOPE = ("key", "payload", "reason", "topic", "partition", "offset", "kafka_timestamp")


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


def parse_telemetry(kafka_rows: DataFrame) -> DataFrame:
    """Kafka rows -> one row per message: typed contract fields, or a quarantine `reason`."""
    return parse_messages(kafka_rows, check_telemetry, PARSED_SCHEMA)


def valid_readings(parsed: DataFrame) -> DataFrame:
    """Rows that honour the contract, in the telemetry table's columns (less ingest time)."""
    return parsed.where(F.col("reason").isNull()).drop("reason", "key", "payload")


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


def split_duplicates(readings: DataFrame, telemetry: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(new readings, duplicates): a repeated (battery_id, date) is a duplicate, not new data.

    Within the batch the lowest offset wins. A reading already in `telemetry` is new only if
    it is the very same source record (same topic, partition, offset): that happens when a
    micro-batch is replayed after a crash, and the replay must still be scored.
    """
    first = Window.partitionBy("battery_id", "date").orderBy("topic", "partition", "offset")
    ranked = readings.withColumn("_rank", F.row_number().over(first))
    in_batch_dupes = ranked.where("_rank > 1").drop("_rank")
    candidates = ranked.where("_rank = 1").drop("_rank")
    known = telemetry.select(
        "battery_id",
        "date",
        F.col("topic").alias("_t"),
        F.col("partition").alias("_p"),
        F.col("offset").alias("_o"),
    )
    joined = candidates.join(known, ["battery_id", "date"], "left")
    same_record = (
        (F.col("_t") == F.col("topic"))
        & (F.col("_p") == F.col("partition"))
        & (F.col("_o") == F.col("offset"))
    )
    is_new = F.col("_t").isNull() | same_record
    new = joined.where(is_new).drop("_t", "_p", "_o")
    seen = joined.where(~is_new).drop("_t", "_p", "_o")
    return new, seen.unionByName(in_batch_dupes)


def split_late(
    readings: DataFrame, telemetry: DataFrame, batch_id: int, late_after_days: int
) -> tuple[DataFrame, DataFrame]:
    """(on time, late): late means more than `late_after_days` before the battery's latest
    reading stored by an earlier micro-batch (a per-battery event-time watermark).

    Only earlier batches count, so a batch replayed after a crash decides exactly as before.
    """
    latest = (
        telemetry.where(F.col("ingest_batch") < batch_id)
        .join(readings.select("battery_id").distinct(), "battery_id")
        .groupBy("battery_id")
        .agg(F.max("date").alias("_latest"))
    )
    joined = readings.join(latest, "battery_id", "left")
    is_late = F.coalesce(F.col("date") < F.date_sub("_latest", late_after_days), F.lit(False))
    late = joined.where(is_late).withColumn(
        "_reason",
        F.format_string(
            "late: %s is more than %d days before the battery's latest reading %s",
            F.col("date").cast("string"),
            F.lit(late_after_days),
            F.col("_latest").cast("string"),
        ),
    )
    return joined.where(~is_late).drop("_latest"), late.drop("_latest")


def classify_readings(
    readings: DataFrame, telemetry: DataFrame, batch_id: int, late_after_days: int
) -> DataFrame:
    """`readings` with `_reason`: null for a new reading, else why it is rejected (late,
    duplicate). `telemetry` holds at least the stored rows of these batteries."""
    on_time, late = split_late(readings, telemetry, batch_id, late_after_days)
    new, duplicates = split_duplicates(on_time, telemetry)
    return (
        new.withColumn("_reason", F.lit(None).cast("string"))
        .unionByName(late)
        .unionByName(duplicates.withColumn("_reason", F.lit("duplicate")))
    )


def rejected_reading_rows(readings: DataFrame, reason) -> DataFrame:
    """Valid-but-rejected readings (duplicate, late) in quarantine's columns, nothing lost."""
    return readings.select(
        F.col("topic").alias("source"),
        F.col("battery_id").alias("key"),
        F.lit(None).cast("binary").alias("payload"),
        F.to_json(F.struct(*READING_SCHEMA.fieldNames())).alias("payload_text"),
        (F.lit(reason) if isinstance(reason, str) else reason).alias("reason"),
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
    )


def replaced_batteries(readings: DataFrame) -> DataFrame:
    """The newest battery per car in `readings`, with its first date (closes older alerts)."""
    newest = Window.partitionBy("car_id").orderBy(F.col("_first").desc(), F.col("battery_id"))
    return (
        readings.groupBy("car_id", "battery_id")
        .agg(F.min("date").alias("_first"))
        .withColumn("_rank", F.row_number().over(newest))
        .where("_rank = 1")
        .select("car_id", "battery_id", F.col("_first").alias("first_date"))
    )


def stored_readings_of(telemetry: DataFrame, readings: DataFrame) -> DataFrame:
    """The stored rows of the batteries that appear in `readings` (one scan, reused)."""
    return telemetry.join(F.broadcast(readings.select("battery_id").distinct()), "battery_id")


def history_for(
    readings: DataFrame,
    telemetry: DataFrame,
    window_days: int,
    health: tuple[str, ...] | list[str] = HEALTH_HISTORY_COLUMNS,
) -> DataFrame:
    """The telemetry rows a window of `window_days` needs for each battery in `readings`,
    with the health signals behind the `health` history arrays."""
    signals = [c for c in HEALTH_COLUMNS if f"{c}{HEALTH_HISTORY_SUFFIX}" in health]
    spans = readings.groupBy("battery_id").agg(
        F.date_sub(F.min("date"), window_days - 1).alias("_from"),
        F.max("date").alias("_to"),
    )
    return (
        telemetry.join(F.broadcast(spans), "battery_id")
        .where((F.col("date") >= F.col("_from")) & (F.col("date") <= F.col("_to")))
        .select("battery_id", "car_id", "date", "daily_cycles_used", *STATIC_COLUMNS, *signals)
    )


def mark_targets(history: DataFrame, targets: DataFrame) -> DataFrame:
    """`history` with a boolean `_target`: the rows (battery_id, date) of `targets`."""
    return history.join(
        targets.select("battery_id", "date").withColumn("_target", F.lit(True)),
        ["battery_id", "date"],
        "left",
    ).withColumn("_target", F.coalesce("_target", F.lit(False)))


# Rows of history per pandas call: a call per battery cost ~10 ms of pandas overhead, which
# at a few readings per battery per micro-batch was most of the work.
ROWS_PER_CALL = 20_000


def map_battery_chunks(
    marked: DataFrame,
    partitions: int,
    fn: Callable[[pd.DataFrame], pa.RecordBatch],
    schema: T.StructType,
) -> DataFrame:
    """`fn` over chunks of whole batteries (about ROWS_PER_CALL rows each) of `marked`.

    Rows are hash-partitioned by battery into `partitions` tasks, so every core gets its
    share. (Grouping by a small bucket number instead let Spark hash buckets 0 and 1 into
    the same one of 2 partitions: every live micro-batch was scored on one core.) Each task
    reads its rows sorted by battery and holds one chunk at a time, however large the batch.
    """

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held: list[pa.RecordBatch] = []
        rows = 0
        for batch in batches:
            held.append(batch)
            rows += batch.num_rows
            if rows < ROWS_PER_CALL:
                continue
            table = pa.Table.from_batches(held)
            # The last battery may go on in the next batch: keep its rows for the next chunk.
            ids = table.column("battery_id")
            cut = pc.index(ids, ids[-1]).as_py()
            if cut > 0:
                yield fn(table.slice(0, cut).to_pandas())
            held = table.slice(cut).to_batches()
            rows = table.num_rows - cut
        if rows:
            yield fn(pa.Table.from_batches(held).to_pandas())

    return (
        marked.repartition(max(1, partitions), "battery_id")
        .sortWithinPartitions("battery_id")
        .mapInArrow(run, schema)
    )


def windows_of_group(
    group: pd.DataFrame, window_days: int, health: tuple[str, ...] | list[str]
) -> pd.DataFrame:
    """Model input rows (`window_schema(health)` columns) for the `_target` rows of a pandas
    group of marked history (see `mark_targets`)."""
    # A replayed batch finds its own records stored already, so its history holds them
    # twice (identical rows): one of each, or every such reading gets two windows.
    group = group.drop_duplicates(["battery_id", "date"])
    wanted = group.loc[group["_target"], ["battery_id", "date"]]
    frame = build_history_windows(group, window_days, wanted)
    cars = group.assign(date=pd.to_datetime(group["date"])).set_index(["battery_id", "date"])
    frame["car_id"] = (
        cars["car_id"]
        .reindex(pd.MultiIndex.from_arrays([frame["battery_id"], frame["date"]]))
        .to_numpy()
    )
    frame["date"] = frame["date"].dt.date
    for name in health:
        if name not in frame.columns:  # the history has no such signal: a null array
            frame[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame[window_schema(health).fieldNames()]


def build_windows(
    history: DataFrame,
    targets: DataFrame,
    window_days: int,
    partitions: int = 2,
    health: tuple[str, ...] | list[str] = HEALTH_HISTORY_COLUMNS,
) -> DataFrame:
    """Model input rows (`window_schema(health)`) for each target reading, from its battery's
    history, in `partitions` tasks.

    The stream scores without materialising windows (`scoring.score_history`); this serves
    tests, benchmarks and anything that wants the model input itself.
    """
    health = list(health)
    schema = window_schema(health)
    arrow_schema = to_arrow_schema(schema, timezone="UTC")

    def windows_of(group: pd.DataFrame) -> pa.RecordBatch:
        frame = windows_of_group(group, window_days, health)
        return pa.RecordBatch.from_pandas(frame, schema=arrow_schema, preserve_index=False)

    return map_battery_chunks(mark_targets(history, targets), partitions, windows_of, schema)


def alerts_from_forecasts(
    forecasts: DataFrame, within_days: int, margin_days: int = 0
) -> DataFrame:
    """One row per battery whose forecast says it fails within `within_days`.

    `alert_date` is the earliest triggering reading of the batch; the forecast fields come
    from the battery's latest triggering reading.
    """
    # Forecast noise makes a "29 days" forecast often mean 31-33: alerting `margin_days`
    # earlier than the horizon keeps precision high at the cost of a few days of lead time.
    triggering = forecasts.where(
        F.col("days_to_failure").isNotNull()
        & (F.col("days_to_failure") <= within_days - margin_days)
    )
    latest = Window.partitionBy("battery_id").orderBy(F.col("date").desc())
    return (
        triggering.withColumn("alert_date", F.min("date").over(Window.partitionBy("battery_id")))
        .withColumn("_rank", F.row_number().over(latest))
        .where("_rank = 1")
        .select(
            F.sha2(F.concat_ws("|", "battery_id", F.col("alert_date").cast("string")), 256)
            .substr(1, 16)
            .alias("alert_id"),
            "battery_id",
            "car_id",
            "alert_date",
            "predicted_failure_date",
            "days_to_failure",
            F.col("date").alias("last_reading_date"),
            "lifetime_cycles_used",
            "battery_rated_cycles",
            "model_name",
            "model_version",
        )
    )
