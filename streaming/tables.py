"""Schemas of Pitstop's Delta tables, and creating them before the first micro-batch.

Creating every table up front means MERGE always has a target and users can query an
empty table instead of a missing path. A table created by an older Pitstop gains the columns
added since (Delta schema evolution, `ALTER TABLE ... ADD COLUMNS`): its rows read them as
null, so an existing lake keeps working.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from core.config import PitstopConfig
from core.contract import TELEMETRY_FIELDS
from models.forecasting.distribution import CUM_COLUMNS, DAILY_COLUMNS, RISK_COLUMN

TELEMETRY = "telemetry"
QUARANTINE = "quarantine"
FORECASTS = "battery_forecasts"
ALERTS = "battery_alerts"
COMPLIANCE_ALERTS = "compliance_alerts"

_SPARK_TYPES = {
    "string": T.StringType(),
    "int": T.LongType(),
    "float": T.DoubleType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}

SOURCE_FIELDS = [
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("kafka_timestamp", T.TimestampType()),
    T.StructField("ingested_at", T.TimestampType()),
]

READING_SCHEMA = T.StructType(
    [T.StructField(f.name, _SPARK_TYPES[f.type], nullable=not f.required) for f in TELEMETRY_FIELDS]
    + [T.StructField("extra", T.StringType())]  # unknown fields, kept as JSON
)

# `ingest_batch` is the micro-batch that stored a reading: the per-battery lateness
# watermark only looks at earlier batches, so a replayed batch decides exactly as before.
TELEMETRY_SCHEMA = T.StructType(
    READING_SCHEMA.fields + SOURCE_FIELDS + [T.StructField("ingest_batch", T.LongType())]
)

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("source", T.StringType()),
        T.StructField("key", T.StringType()),
        T.StructField("payload", T.BinaryType()),
        T.StructField("payload_text", T.StringType()),
        T.StructField("reason", T.StringType()),
    ]
    + SOURCE_FIELDS
)

FORECAST_SCHEMA = T.StructType(
    [
        T.StructField("battery_id", T.StringType(), False),
        T.StructField("car_id", T.StringType()),
        T.StructField("date", T.DateType(), False),
        T.StructField("lifetime_cycles_used", T.DoubleType()),
        T.StructField("battery_rated_cycles", T.DoubleType()),
        T.StructField("forecast", T.ArrayType(T.DoubleType())),
        T.StructField("days_to_failure", T.IntegerType()),
        T.StructField("predicted_failure_date", T.DateType()),
        T.StructField("model_name", T.StringType(), False),
        T.StructField("model_version", T.StringType()),
        T.StructField("model_role", T.StringType()),
        T.StructField("scored_at", T.TimestampType()),
        # Added with issue 16: quantiles of daily and running-total cycles over the horizon
        # and the calibrated failure risk (null for models without them).
        *[T.StructField(c, T.ArrayType(T.DoubleType())) for c in (*DAILY_COLUMNS, *CUM_COLUMNS)],
        T.StructField(RISK_COLUMN, T.DoubleType()),
    ]
)

ALERT_SCHEMA = T.StructType(
    [
        T.StructField("alert_id", T.StringType(), False),
        T.StructField("battery_id", T.StringType(), False),
        T.StructField("car_id", T.StringType()),
        T.StructField("status", T.StringType(), False),
        T.StructField("alert_date", T.DateType(), False),
        T.StructField("predicted_failure_date", T.DateType()),
        T.StructField("days_to_failure", T.IntegerType()),
        T.StructField("last_reading_date", T.DateType()),
        T.StructField("lifetime_cycles_used", T.DoubleType()),
        T.StructField("battery_rated_cycles", T.DoubleType()),
        T.StructField("model_name", T.StringType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("message", T.StringType()),
        T.StructField("created_at", T.TimestampType()),
        T.StructField("updated_at", T.TimestampType()),
        T.StructField("closed_at", T.TimestampType()),
        T.StructField("close_reason", T.StringType()),
        # Set once the opening was published to the vehicle-alerts topic (an outbox).
        T.StructField("published_at", T.TimestampType()),
        # The calibrated failure risk of the latest triggering forecast (null for models
        # without a risk). Added with issue 16.
        T.StructField(RISK_COLUMN, T.DoubleType()),
    ]
)

COMPLIANCE_ALERT_SCHEMA = T.StructType(
    [
        T.StructField("car_id", T.StringType(), False),
        T.StructField("note_id", T.StringType(), False),
        T.StructField("component", T.StringType()),
        T.StructField("text", T.StringType()),
        T.StructField("probability", T.DoubleType()),
        T.StructField("written_at", T.TimestampType()),
        T.StructField("model_name", T.StringType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("created_at", T.TimestampType()),
    ]
)

# Data-skipping statistics only on the columns readers filter by (Delta's default is the
# first 32 columns, forecasts and health arrays included), and a checkpoint every 50
# commits instead of 10: with a commit per micro-batch, Delta's default rebuilt a table's
# whole state for a checkpoint every few seconds (`benchmarks/sink_floor.py`).
_COMMON = {"delta.checkpointInterval": "50"}
TABLE_PROPERTIES: dict[str, dict[str, str]] = {
    TELEMETRY: {"delta.dataSkippingStatsColumns": "battery_id,car_id,date", **_COMMON},
    QUARANTINE: {"delta.dataSkippingStatsColumns": "reason,topic,kafka_timestamp", **_COMMON},
    FORECASTS: {
        "delta.dataSkippingStatsColumns": "battery_id,date,model_name,model_version",
        **_COMMON,
    },
    ALERTS: {
        "delta.dataSkippingStatsColumns": "alert_id,battery_id,car_id,status,alert_date",
        **_COMMON,
    },
    COMPLIANCE_ALERTS: {"delta.dataSkippingStatsColumns": "car_id,note_id,written_at", **_COMMON},
}

SCHEMAS: dict[str, T.StructType] = {
    TELEMETRY: TELEMETRY_SCHEMA,
    QUARANTINE: QUARANTINE_SCHEMA,
    FORECASTS: FORECAST_SCHEMA,
    ALERTS: ALERT_SCHEMA,
    COMPLIANCE_ALERTS: COMPLIANCE_ALERT_SCHEMA,
}


def ensure_tables(spark: SparkSession, cfg: PitstopConfig) -> dict[str, str]:
    """Create any missing Pitstop table at its configured location, with its properties
    (set on an older table too); return name -> path."""
    paths = {}
    for name, schema in SCHEMAS.items():
        path = cfg.storage.table(name)
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
        for key, value in TABLE_PROPERTIES[name].items():
            builder = builder.property(key, value)
        table = builder.execute()
        _add_missing_columns(spark, path, table.toDF().schema, schema)
        stored = table.detail().select("properties").first().properties
        missing = {k: v for k, v in TABLE_PROPERTIES[name].items() if stored.get(k) != v}
        if missing:
            settings = ", ".join(f"'{k}' = '{v}'" for k, v in missing.items())
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({settings})")
        paths[name] = path
    return paths


def _add_missing_columns(
    spark: SparkSession, path: str, stored: T.StructType, wanted: T.StructType
) -> None:
    """Add to a table created by an older Pitstop the columns of `wanted` it lacks."""
    have = set(stored.fieldNames())
    missing = [f for f in wanted.fields if f.name not in have]
    if not missing:
        return
    columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
    spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")
