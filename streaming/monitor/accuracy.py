"""Pair stored forecasts with the readings that arrived for the days they covered (Spark).

A forecast made from battery b's reading of day D covers days D+1..D+H; once the reading of
such a day T is stored, (forecast, T) is one `forecast_accuracy` row. Each pair is written by
the monitor micro-batch that delivers the *later* of its two readings -- later by the
telemetry `ingested_at` of the stream batch that stored it (one value per stream batch; the
actual wins a tie) -- so a pair is written once whichever reading came first (readings may
arrive out of order within `stream.late_after_days`), and a replayed batch finds the same
pairs: every reading it compares with was stored no later than its own.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming.tables import FORECAST_ACCURACY_SCHEMA

READING_COLUMNS = ("battery_id", "date", "daily_cycles_used", "ingested_at")
FORECAST_COLUMNS = ("battery_id", "date", "forecast", "model_name", "model_version", "model_role")
# An IN list pushes down to the Delta scan; beyond this many batteries a semi-join is cheaper.
MAX_IN_LIST = 1_000


def new_readings(rows: DataFrame) -> DataFrame:
    """The telemetry rows a monitor micro-batch delivered, only what pairing needs."""
    return rows.select(*READING_COLUMNS)


def near(
    table: DataFrame,
    batteries: DataFrame,
    battery_ids: list[str] | None,
    first: dt.date,
    last: dt.date,
) -> DataFrame:
    """Rows of `table` for these batteries dated first..last: the date range (and a short
    battery list) go to Delta's data skipping; a long battery list is a semi-join."""
    dated = table.where(F.col("date").between(F.lit(first), F.lit(last)))
    if battery_ids is not None and len(battery_ids) <= MAX_IN_LIST:
        return dated.where(F.col("battery_id").isin(battery_ids))
    return dated.join(batteries, "battery_id", "left_semi")


def missing_forecasts(new: DataFrame, forecasts: DataFrame, recent_since: Column) -> DataFrame:
    """New readings stored since `recent_since` that have no forecast yet: the stream commits a
    batch's telemetry and forecasts side by side, so these are forecasts still on their way."""
    return new.where(F.col("ingested_at") >= recent_since).join(
        forecasts.select("battery_id", "date"), ["battery_id", "date"], "left_anti"
    )


def accuracy_pairs(
    new: DataFrame,
    stored: DataFrame,
    forecasts: DataFrame,
    monitor_batch: int,
) -> DataFrame:
    """`forecast_accuracy` rows this batch owns.

    `new`: the batch's readings (READING_COLUMNS); `stored`: telemetry of the same batteries
    around their dates (READING_COLUMNS, `new` included); `forecasts`: battery_forecasts rows
    made from those days (FORECAST_COLUMNS).
    """
    origin = stored.select(
        "battery_id",
        F.col("date").alias("forecast_date"),
        F.col("ingested_at").alias("_origin_at"),
    )
    actual = stored.select(
        "battery_id",
        F.col("date").alias("target_date"),
        F.col("daily_cycles_used").alias("actual"),
        F.col("ingested_at").alias("_actual_at"),
    )
    days = (
        forecasts.withColumnRenamed("date", "forecast_date")
        .join(origin, ["battery_id", "forecast_date"])
        .select(
            "battery_id",
            "forecast_date",
            "model_name",
            "model_version",
            "model_role",
            "_origin_at",
            F.posexplode("forecast").alias("_pos", "forecast"),
        )
        .withColumn("horizon_day", (F.col("_pos") + 1).cast("int"))
        .withColumn("target_date", F.date_add("forecast_date", F.col("horizon_day")))
    )
    paired = days.join(actual, ["battery_id", "target_date"])
    owner = F.when(F.col("_actual_at") >= F.col("_origin_at"), F.col("target_date")).otherwise(
        F.col("forecast_date")
    )
    mine = new.select("battery_id", F.col("date").alias("_owner_date"))
    owned = paired.withColumn("_owner_date", owner).join(
        mine, ["battery_id", "_owner_date"], "left_semi"
    )
    values = {
        "error": F.col("forecast") - F.col("actual"),
        "computed_at": F.current_timestamp(),
        "monitor_batch": F.lit(monitor_batch).cast("long"),
    }
    return owned.select(
        *[
            values.get(f.name, F.col(f.name)).cast(f.dataType).alias(f.name)
            for f in FORECAST_ACCURACY_SCHEMA.fields
        ]
    )
