"""Idempotent Delta writes: every micro-batch may be replayed after a crash.

Appends carry Delta's `txnAppId`/`txnVersion` (a replayed batch id is skipped); MERGEs are
idempotent by construction (deterministic keys, sources deduplicated per key first).
"""

from __future__ import annotations

import time

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def append_once(frame: DataFrame, path: str, app_id: str, batch_id: int) -> None:
    """Append `frame` unless this (app_id, batch_id) was already committed to `path`."""
    (
        frame.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .save(path)
    )


_ALERT_UPDATES = (
    "predicted_failure_date",
    "days_to_failure",
    "last_reading_date",
    "lifetime_cycles_used",
    "battery_rated_cycles",
    "model_name",
    "model_version",
    "message",
)


def merge_alerts(spark: SparkSession, alerts: DataFrame, path: str) -> None:
    """Open one alert per battery, or refresh the forecast of its open alert (never a duplicate).

    A battery whose alert an operator acknowledged gets no new alert until it is replaced.
    """
    now = F.current_timestamp()
    source = alerts.withColumn(
        "message",
        F.format_string(
            "Your car's battery is predicted to reach the end of its life around %s. "
            "Please book a service appointment before then.",
            F.date_format("predicted_failure_date", "d MMMM yyyy"),
        ),
    )
    insert = {c: F.col(f"s.{c}") for c in source.columns}
    insert.update(
        status=F.lit("open"),
        created_at=now,
        updated_at=now,
        closed_at=F.lit(None).cast("timestamp"),
        close_reason=F.lit(None).cast("string"),
        published_at=F.lit(None).cast("timestamp"),
    )
    update = {c: F.col(f"s.{c}") for c in _ALERT_UPDATES}
    update["updated_at"] = now
    _retry_on_conflict(
        lambda: (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(
                source.alias("s"),
                "t.battery_id = s.battery_id AND t.status IN ('open', 'acknowledged')",
            )
            .whenMatchedUpdate(condition="t.status = 'open'", set=update)
            .whenNotMatchedInsert(values=insert)
            .execute()
        )
    )


def close_replaced_alerts(spark: SparkSession, replacements: DataFrame, path: str) -> None:
    """Close a car's open alert once a different battery of that car reports (it was replaced)."""
    now = F.current_timestamp()
    _retry_on_conflict(
        lambda: (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(
                replacements.alias("s"),
                "t.car_id = s.car_id AND t.battery_id <> s.battery_id AND t.status = 'open' "
                "AND s.first_date >= t.alert_date",
            )
            .whenMatchedUpdate(
                set={
                    "status": F.lit("closed"),
                    "close_reason": F.lit("replaced"),
                    "closed_at": now,
                    "updated_at": now,
                }
            )
            .execute()
        )
    )


def mark_published(spark: SparkSession, alert_ids: list[str], path: str) -> None:
    """Record that these alert openings reached the vehicle-alerts topic."""
    if not alert_ids:
        return
    ids = spark.createDataFrame([(a,) for a in alert_ids], "alert_id string")
    _retry_on_conflict(
        lambda: (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(ids.alias("s"), "t.alert_id = s.alert_id AND t.published_at IS NULL")
            .whenMatchedUpdate(set={"published_at": F.current_timestamp()})
            .execute()
        )
    )


def _retry_on_conflict(command, attempts: int = 5) -> None:
    """Run a Delta command, retrying when a concurrent writer (e.g. `alerts ack`) won the race."""
    from delta import exceptions as conflicts

    # Delta's Python conflict classes do not share a base class, so name them all.
    retryable = (
        conflicts.DeltaConcurrentModificationException,
        conflicts.ConcurrentWriteException,
        conflicts.ConcurrentAppendException,
        conflicts.ConcurrentDeleteReadException,
        conflicts.ConcurrentDeleteDeleteException,
        conflicts.ConcurrentTransactionException,
    )
    for attempt in range(1, attempts + 1):
        try:
            command()
            return
        except retryable:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
