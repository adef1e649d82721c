"""A scored micro-batch (scoring.BATCH_SCHEMA) -> the rows of each table it feeds."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming.battery.alerts import TRIGGER_COLUMNS
from streaming.battery.history import REJECTED, STORED
from streaming.battery.scoring import FORECAST, READING
from streaming.parsing import quarantine_counts
from streaming.tables import FORECAST_SCHEMA, QUARANTINE_SCHEMA, READING_SCHEMA, TELEMETRY_SCHEMA


def telemetry_rows(batch: DataFrame, batch_id: int) -> DataFrame:
    """New readings in `telemetry`'s columns, stamped with the micro-batch that stored them."""
    return batch.where(F.col("kind") == READING).select(
        *[
            F.lit(batch_id).cast("long").alias(c)
            if c == "ingest_batch"
            else F.current_timestamp().alias(c)
            if c == "ingested_at"
            else F.col(c)
            for c in TELEMETRY_SCHEMA.fieldNames()
        ]
    )


def quarantine_rows(batch: DataFrame) -> DataFrame:
    """Rejected messages in `quarantine`'s columns: raw payload (or, for a valid reading that
    came late or twice, its fields as JSON) and the reason."""
    # A valid reading rejected by the state step (late, duplicate) left its payload behind.
    reading = F.col("battery_id").isNotNull()
    columns: dict[str, Column] = {
        "source": F.col("topic"),
        "key": F.when(reading, F.col("battery_id")).otherwise(F.col("key")),
        "payload_text": F.when(
            reading, F.to_json(F.struct(*READING_SCHEMA.fieldNames()))
        ).otherwise(F.col("payload").cast("string")),
        "ingested_at": F.current_timestamp(),
    }
    return batch.where(F.col("kind") == REJECTED).select(
        *[columns.get(c, F.col(c)).alias(c) for c in QUARANTINE_SCHEMA.fieldNames()]
    )


def forecast_rows(batch: DataFrame) -> DataFrame:
    """Every model's forecast of every new reading, in `battery_forecasts`' columns."""
    return batch.where(F.col("kind") == FORECAST).select(
        *[
            F.current_timestamp().alias(c) if c == "scored_at" else F.col(c)
            for c in FORECAST_SCHEMA.fieldNames()
        ]
    )


def is_trigger(within_days: int, margin_days: int) -> Column:
    """A champion forecast that says the battery fails in time to alert.

    Forecast noise makes a "29 days" forecast often mean 31-33: alerting `margin_days`
    earlier than the horizon keeps precision high at the cost of a few days of lead time.
    """
    return (
        (F.col("kind") == FORECAST)
        & (F.col("model_role") == "champion")
        & F.col("days_to_failure").isNotNull()
        & (F.col("days_to_failure") <= within_days - margin_days)
    )


def is_arrival() -> Column:
    """The first reading of a battery new to the stream (it may replace a car's battery)."""
    return (F.col("kind") == READING) & F.col("first_seen")


def alert_signals(batch: DataFrame, within_days: int, margin_days: int) -> DataFrame:
    """The control rows the driver plans alerts from: triggers and arrivals (bounded)."""
    trigger = is_trigger(within_days, margin_days)
    return batch.where(trigger | is_arrival()).select(trigger.alias("trigger"), *TRIGGER_COLUMNS)


# Bins of the observed histogram of new readings' Kafka timestamps (event-to-alert latency).
ARRIVAL_BINS = 16


def batch_counts(within_days: int, margin_days: int, metrics: bool = False) -> list[Column]:
    """Observed per micro-batch (DataFrame.observe): what it held and what became of it.

    With `metrics`, also the rejects per reason category and `arrivals`, a histogram of the
    new readings' Kafka timestamps (epoch ms) -- what the job's Prometheus metrics need.
    """
    kind = F.col("kind")
    extra = []
    if metrics:
        arrived = F.when(kind == READING, F.unix_millis("kafka_timestamp"))
        extra = [
            *quarantine_counts(kind == REJECTED, F.col("reason")),
            F.histogram_numeric(arrived, F.lit(ARRIVAL_BINS)).alias("arrivals"),
        ]
    return [
        F.count_if(is_trigger(within_days, margin_days) | is_arrival()).alias("signals"),
        F.count_if(kind != FORECAST).alias("messages"),
        F.count_if(kind == READING).alias("new"),
        F.count_if(kind == REJECTED).alias("rejected"),
        F.count_if(kind == STORED).alias("stored"),
        F.count_if(kind == FORECAST).alias("forecasts"),
        *extra,
    ]
