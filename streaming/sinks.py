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


def update_alerts(
    spark: SparkSession, path: str, alerts: DataFrame, replacements: DataFrame | None = None
) -> int:
    """Open, refresh and close battery alerts in one MERGE; returns how many alerts opened.

    `alerts` (one row per battery predicted to fail) opens one alert per battery or refreshes
    the forecast of its open alert -- never a duplicate; a battery whose alert an operator
    acknowledged gets no new alert until it is replaced. `replacements` (the newest battery
    per car, with its first date) closes a car's open alerts of other batteries; an alert
    whose battery was replaced within this same batch is opened closed.
    """
    now = F.current_timestamp()
    upserts = alerts.withColumn(
        "message",
        F.format_string(
            "Your car's battery is predicted to reach the end of its life around %s. "
            "Please book a service appointment before then.",
            F.date_format("predicted_failure_date", "d MMMM yyyy"),
        ),
    )
    columns = upserts.columns
    if replacements is None:
        replacements = spark.createDataFrame(
            [], "car_id string, battery_id string, first_date date"
        )
    # A MERGE may not change one target row from two source rows, so a battery with a
    # forecast in this batch is closed by its own row (`_replaced_on`), not its car's.
    newer = replacements.select(
        "car_id", F.col("battery_id").alias("_newest"), F.col("first_date").alias("_newest_on")
    )
    upserts = (
        upserts.join(newer, "car_id", "left")
        .withColumn(
            "_replaced_on",
            F.when(F.col("_newest") != F.col("battery_id"), F.col("_newest_on")),
        )
        .drop("_newest", "_newest_on")
    )
    forecast_here = upserts.groupBy("car_id").agg(F.collect_list("battery_id").alias("_skip"))
    closes = replacements.join(forecast_here, "car_id", "left").select(
        *[F.col(c) if c in ("battery_id", "car_id") else F.lit(None).alias(c) for c in columns],
        F.lit(True).alias("_close"),
        "first_date",
        F.coalesce("_skip", F.array().cast("array<string>")).alias("_skip"),
        F.lit(None).cast("date").alias("_replaced_on"),
    )
    source = upserts.select(
        *columns,
        F.lit(False).alias("_close"),
        F.lit(None).cast("date").alias("first_date"),
        F.array().cast("array<string>").alias("_skip"),
        "_replaced_on",
    ).unionByName(closes)

    closed = {
        "status": F.lit("closed"),
        "close_reason": F.lit("replaced"),
        "closed_at": now,
        "updated_at": now,
    }
    refresh = {c: F.col(f"s.{c}") for c in _ALERT_UPDATES}
    refresh["updated_at"] = now
    replaced_now = F.col("s._replaced_on") >= F.col("s.alert_date")
    insert = {c: F.col(f"s.{c}") for c in columns}
    insert.update(
        status=F.when(replaced_now, "closed").otherwise("open"),
        created_at=now,
        updated_at=now,
        closed_at=F.when(replaced_now, now),
        close_reason=F.when(replaced_now, "replaced"),
        published_at=F.lit(None).cast("timestamp"),
    )
    # An alert's id is its opening (battery and first triggering date): a row with that id
    # means a replay of the batch that opened it -- even if it was opened closed, which the
    # status test alone would not see -- so it is matched, changed by no clause, not inserted.
    matches = (
        "(NOT s._close AND t.battery_id = s.battery_id"
        " AND (t.status IN ('open', 'acknowledged') OR t.alert_id = s.alert_id))"
        " OR (s._close AND t.car_id = s.car_id AND t.battery_id <> s.battery_id"
        " AND NOT array_contains(s._skip, t.battery_id)"
        " AND t.status = 'open' AND s.first_date >= t.alert_date)"
    )

    # The source is a row per battery predicted to fail and per car in the batch, behind
    # windows, joins and shuffles. MERGE scans its source twice: computed once and kept
    # (lineage cut), both scans are cheap and see the same rows.
    local = source.localCheckpoint(eager=True)

    def merge() -> DataFrame:
        return (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(local.alias("s"), matches)
            .whenMatchedUpdate(condition="s._close", set=closed)
            .whenMatchedUpdate(
                condition="t.status = 'open' AND s._replaced_on >= t.alert_date",
                set={**refresh, **closed},
            )
            .whenMatchedUpdate(condition="t.status = 'open'", set=refresh)
            .whenNotMatchedInsert(condition="NOT s._close", values=insert)
            .execute()
        )

    try:
        metrics = retry_on_conflict(merge).first()
    finally:
        release_checkpoint(local)
    return int(metrics["num_inserted_rows"]) if metrics is not None else 0


def release_checkpoint(frame: DataFrame) -> None:
    """Drop a local checkpoint's blocks now rather than at the next cleaner pass."""
    plan = frame._jdf.queryExecution().logical()
    if plan.getClass().getSimpleName() == "LogicalRDD":
        plan.rdd().unpersist(False)


def mark_published(spark: SparkSession, alert_ids: list[str], path: str) -> None:
    """Record that these alert openings reached the vehicle-alerts topic."""
    if not alert_ids:
        return
    retry_on_conflict(
        lambda: DeltaTable.forPath(spark, path).update(
            F.col("alert_id").isin(alert_ids) & F.col("published_at").isNull(),
            {"published_at": F.current_timestamp()},
        )
    )


def retry_on_conflict(command, attempts: int = 5):
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
            return command()
        except retryable:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
