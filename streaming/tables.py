"""Schemas of Pitstop's Delta tables, and creating them before the first micro-batch.

Creating every table up front means MERGE always has a target and users can query an
empty table instead of a missing path. A table created by an older Pitstop gains the columns
added since (Delta schema evolution, `ALTER TABLE ... ADD COLUMNS`): its rows read them as
null, so an existing lake keeps working.
"""

from __future__ import annotations

import logging
import re

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from core.config import PitstopConfig
from core.contract import TELEMETRY_FIELDS
from models.forecasting.distribution import CUM_COLUMNS, DAILY_COLUMNS, RISK_COLUMN

log = logging.getLogger(__name__)

TELEMETRY = "telemetry"
QUARANTINE = "quarantine"
FORECASTS = "battery_forecasts"
ALERTS = "battery_alerts"
COMPLIANCE_ALERTS = "compliance_alerts"
FORECAST_ACCURACY = "forecast_accuracy"
MODEL_HEALTH = "model_health"

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
        # The lifecycle battery alerts have (added to older tables by `ensure_tables`):
        # an id (sha256 of car_id|note_id, 16 hex), open -> acknowledged, the outbox mark.
        T.StructField("alert_id", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("updated_at", T.TimestampType()),
        T.StructField("closed_at", T.TimestampType()),
        T.StructField("close_reason", T.StringType()),
        T.StructField("published_at", T.TimestampType()),
    ]
)

# One row per (forecast, day it covered) once that day's reading arrived (`pitstop monitor`).
FORECAST_ACCURACY_SCHEMA = T.StructType(
    [
        T.StructField("model_name", T.StringType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("model_role", T.StringType()),  # champion | shadow
        T.StructField("battery_id", T.StringType()),
        T.StructField("forecast_date", T.DateType()),  # the reading the forecast was made from
        T.StructField("horizon_day", T.IntegerType()),  # 1..horizon
        T.StructField("target_date", T.DateType()),
        T.StructField("forecast", T.DoubleType()),
        T.StructField("actual", T.DoubleType()),
        T.StructField("error", T.DoubleType()),  # forecast - actual
        T.StructField("computed_at", T.TimestampType()),
        T.StructField("monitor_batch", T.LongType()),
    ]
)

# The champion's live accuracy against its offline holdout, one row per monitor check.
MODEL_HEALTH_SCHEMA = T.StructType(
    [
        T.StructField("checked_at", T.TimestampType()),
        T.StructField("model_name", T.StringType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("model_role", T.StringType()),
        T.StructField("day", T.DateType()),  # the latest target day the live window ends on
        T.StructField("live_nrmse", T.DoubleType()),
        T.StructField("live_mae", T.DoubleType()),
        T.StructField("pairs", T.LongType()),
        T.StructField("holdout_nrmse", T.DoubleType()),
        T.StructField("threshold", T.DoubleType()),  # holdout x (1 + monitor.margin)
        T.StructField("days_over", T.IntegerType()),  # consecutive days above the threshold
        T.StructField("status", T.StringType()),  # ok | degraded | unknown
        T.StructField("drift_psi", T.DoubleType()),  # daily cycles vs the training data
        T.StructField("drift_ks", T.DoubleType()),
        T.StructField("retraining", T.StringType()),  # what was started, if anything
        T.StructField("monitor_batch", T.LongType()),
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
    COMPLIANCE_ALERTS: {
        "delta.dataSkippingStatsColumns": "car_id,note_id,written_at,alert_id,status",
        **_COMMON,
    },
    FORECAST_ACCURACY: {
        "delta.dataSkippingStatsColumns": "model_name,model_version,battery_id,target_date",
        **_COMMON,
    },
    MODEL_HEALTH: {"delta.dataSkippingStatsColumns": "checked_at,model_name", **_COMMON},
}

SCHEMAS: dict[str, T.StructType] = {
    TELEMETRY: TELEMETRY_SCHEMA,
    QUARANTINE: QUARANTINE_SCHEMA,
    FORECASTS: FORECAST_SCHEMA,
    ALERTS: ALERT_SCHEMA,
    COMPLIANCE_ALERTS: COMPLIANCE_ALERT_SCHEMA,
    FORECAST_ACCURACY: FORECAST_ACCURACY_SCHEMA,
    MODEL_HEALTH: MODEL_HEALTH_SCHEMA,
}

# Run once on an existing table right after `ensure_tables` added these columns to it.
_BACKFILL = {
    (COMPLIANCE_ALERTS, "status"): (
        "UPDATE delta.`{path}` SET status = 'open', updated_at = created_at, "
        "alert_id = substr(sha2(concat(car_id, '|', note_id), 256), 1, 16) "
        "WHERE status IS NULL"
    ),
}


def ensure_tables(spark: SparkSession, cfg: PitstopConfig) -> dict[str, str]:
    """Create any missing Pitstop table at its configured location, with its properties
    (set on an older table too), and add the columns an older table lacks (Delta schema
    evolution, then a backfill where one is due); return name -> path."""
    paths = {}
    for name, schema in SCHEMAS.items():
        path = cfg.storage.table(name)
        if DeltaTable.isDeltaTable(spark, path):
            table = DeltaTable.forPath(spark, path)
            _add_missing_columns(spark, name, path, table, schema)
        else:
            _clear_aborted_creation(spark, path)
            builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
            for key, value in TABLE_PROPERTIES[name].items():
                builder = builder.property(key, value)
            table = builder.execute()
        stored = table.detail().select("properties").first().properties
        missing = {k: v for k, v in TABLE_PROPERTIES[name].items() if stored.get(k) != v}
        if missing:
            settings = ", ".join(f"'{k}' = '{v}'" for k, v in missing.items())
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({settings})")
        paths[name] = path
    return paths


# A commit (NNN.json), its checksum, a checkpoint of any kind or a compacted log: any of them
# means the table exists. Temporary files start with a dot and never match.
_COMMITTED = re.compile(r"\d{20}\..+|_last_checkpoint")


def _clear_aborted_creation(spark: SparkSession, path: str) -> None:
    """Remove a `_delta_log` that holds no commit at all: what a job killed while creating
    the table leaves (`_staged_commits/`, temporary files). Delta neither reads such a
    log as a table nor creates one over it, so without this every later start fails."""
    jvm = spark.sparkContext._jvm
    log_dir = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
    fs = log_dir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(log_dir):
        return
    names = [status.getPath().getName() for status in fs.listStatus(log_dir)]
    if any(_COMMITTED.fullmatch(name) for name in names):
        return
    log.warning(
        "%s/_delta_log holds no commit (a creation was interrupted: %s); creating the table afresh",
        path,
        ", ".join(sorted(names)) or "empty",
    )
    fs.delete(log_dir, True)


def _add_missing_columns(
    spark: SparkSession, name: str, path: str, table: DeltaTable, schema: T.StructType
) -> None:
    """Add the columns of `schema` that the stored table lacks (older Pitstop versions)."""
    stored = set(table.toDF().columns)
    missing = [f for f in schema.fields if f.name not in stored]
    if not missing:
        return
    columns = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in missing)
    spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})")
    log.warning("Added column(s) %s to %s", ", ".join(f.name for f in missing), path)
    for field in missing:
        statement = _BACKFILL.get((name, field.name))
        if statement:
            spark.sql(statement.format(path=path))
