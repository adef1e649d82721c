"""One battery micro-batch, end to end: validate -> store -> window -> score -> alert.

The same function serves the Kafka stream, file replay and tests; the source only has
to provide Kafka's columns (key, value, topic, partition, offset, timestamp).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from pyspark import Accumulator, inheritable_thread_target
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pitstop.config import PitstopConfig
from streaming import sinks, tables, transforms
from streaming.alert_publisher import publish_new_alerts, reconcile_published
from streaming.scoring import (
    ModelTracker,
    PinnedModel,
    RegistryTarget,
    health_inputs,
    score_history,
)

log = logging.getLogger("pitstop.stream")


@dataclass
class BatteryJob:
    """Everything a battery micro-batch needs, built once by the driver."""

    cfg: PitstopConfig
    paths: dict[str, str]
    champion: ModelTracker | PinnedModel
    target: RegistryTarget
    shadows: list[ModelTracker] = field(default_factory=list)
    loads: Accumulator | None = None
    app_ids: dict[str, str] = field(default_factory=dict)

    def app_id(self, spark: SparkSession, sink: str) -> str:
        """A txnAppId stable across restarts of this checkpoint: the query's persistent id."""
        if sink not in self.app_ids:
            query_id = next(
                (str(q.id) for q in spark.streams.active if q.name == self.cfg.stream.query_name),
                self.cfg.stream.query_name,
            )
            self.app_ids[sink] = f"pitstop-{query_id}-{sink}"
        return self.app_ids[sink]


def process_telemetry_batch(job: BatteryJob, batch: DataFrame, batch_id: int) -> None:
    """Validate, store, window, score and alert one micro-batch (replay-safe).

    Spark's fixed cost per job and per Delta commit (~0.5 s each here) dominates a
    micro-batch, so the batch runs as few of them as it can: sinks with nothing to write
    are skipped, the alert table gets one MERGE, and the independent writes (quarantine,
    telemetry, then forecasts and alerts) run side by side in threads.
    """
    spark = batch.sparkSession
    started = time.monotonic()
    cfg, paths = job.cfg, job.paths
    refs = [job.champion.refresh(), *(shadow.refresh() for shadow in job.shadows)]
    # Every reused intermediate is checkpointed locally (eager, lineage cut): Delta's MERGE
    # re-analyses its source plan several times, and on the full lineage (parse, joins,
    # pandas functions) a MERGE of a few hundred alerts took 25-45 s instead of about 1 s.
    parsed = _checkpoint(
        transforms.parse_telemetry(batch).withColumn("ingested_at", F.current_timestamp())
    )
    cached = [parsed]
    try:
        valid = transforms.valid_readings(parsed)
        messages, n_valid, first_date = parsed.agg(
            F.count(F.lit(1)),
            F.count_if(F.col("reason").isNull()),
            F.min(F.when(F.col("reason").isNull(), F.col("date"))),
        ).first()
        n_new = 0
        rejected = transforms.quarantine_rows(parsed)
        writes: list[Callable[[], object]] = []
        if n_valid:
            # One scan of the table serves lateness, duplicates and history. Older rows than
            # this cannot decide any of them: a reading is late only against a later one.
            reach = cfg.forecast.window_days + cfg.stream.late_after_days + 1
            telemetry = (
                spark.read.format("delta")
                .load(paths[tables.TELEMETRY])
                .where(F.col("date") >= F.date_sub(F.lit(first_date), reach))
            )
            known = _checkpoint(transforms.stored_readings_of(telemetry, valid))
            cached.append(known)
            fates = _checkpoint(
                transforms.classify_readings(
                    valid, known, batch_id, cfg.stream.late_after_days
                ).withColumn("ingest_batch", F.lit(batch_id).cast("long"))
            )
            cached.append(fates)
            n_new = fates.where(F.col("_reason").isNull()).count()
            new = fates.where(F.col("_reason").isNull()).drop("_reason")
            rejected = rejected.unionByName(
                transforms.rejected_reading_rows(
                    fates.where(F.col("_reason").isNotNull()), F.col("_reason")
                )
            )
        if messages - n_new:
            writes.append(
                lambda: sinks.append_once(
                    rejected.withColumn("ingested_at", F.current_timestamp()),
                    paths[tables.QUARANTINE],
                    job.app_id(spark, tables.QUARANTINE),
                    batch_id,
                )
            )
        opened: list[int] = []
        if n_new:
            # `new` holds no stored (battery_id, date) but this batch's own records, and a
            # replayed batch's append is skipped by its txn version: an append is exactly once.
            writes.append(
                lambda: sinks.append_once(
                    new.select(*tables.TELEMETRY_SCHEMA.fieldNames()),
                    paths[tables.TELEMETRY],
                    job.app_id(spark, tables.TELEMETRY),
                    batch_id,
                )
            )
            writes.append(
                lambda: opened.append(
                    _score_and_alert(
                        job,
                        spark,
                        known,
                        new,
                        refs,
                        batch_id,
                        cached,
                    )
                )
            )
        _run_side_by_side(writes)
        log.info(
            "batch %d: %d messages, %d new readings, %d alert(s) opened, %s, %.1fs",
            batch_id,
            messages,
            n_new,
            sum(opened),
            ", ".join(f"{r.name} v{r.version}" for r in refs),
            time.monotonic() - started,
        )
    finally:
        for frame in cached:
            sinks.release_checkpoint(frame)


def _score_and_alert(
    job: BatteryJob,
    spark: SparkSession,
    known: DataFrame,
    new: DataFrame,
    refs: list,
    batch_id: int,
    cached: list[DataFrame],
) -> int:
    """Forecast every new reading, store the forecasts, update the alerts; alerts opened."""
    cfg, paths = job.cfg, job.paths
    history = transforms.history_for(
        new,
        known.unionByName(new.select(*known.columns)),
        cfg.forecast.window_days,
        health_inputs(refs),
    )
    scored = score_history(
        history,
        new,
        cfg.forecast.window_days,
        refs,
        job.target,
        job.loads,
        cfg.spark.shuffle_partitions,
    )
    scored = _checkpoint(scored.withColumn("scored_at", F.current_timestamp()))
    cached.append(scored)
    opened: list[int] = []

    def alerts() -> None:
        champion = scored.where(F.col("model_role") == "champion")
        found = transforms.alerts_from_forecasts(
            champion, cfg.forecast.alert_within_days, cfg.forecast.alert_margin_days
        )
        opened.append(
            sinks.update_alerts(
                spark, paths[tables.ALERTS], found, transforms.replaced_batteries(new)
            )
        )
        # Openings are published right after the MERGE that made them; one that a crash
        # left unpublished is sent when the job starts again (`build_job`).
        if opened[0] and cfg.stream.publish_alerts:
            publish_new_alerts(spark, cfg, paths[tables.ALERTS])

    _run_side_by_side(
        [
            lambda: sinks.append_once(
                scored.select(*tables.FORECAST_SCHEMA.fieldNames()),
                paths[tables.FORECASTS],
                job.app_id(spark, tables.FORECASTS),
                batch_id,
            ),
            alerts,
        ]
    )
    return opened[0]


def _run_side_by_side(tasks: list[Callable[[], object]]) -> None:
    """Run independent Spark actions in threads (Spark schedules their jobs concurrently).

    Waits for every task before returning or raising, so no write outlives its batch.
    """
    if len(tasks) <= 1:
        for task in tasks:
            task()
        return
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="pitstop-sink") as pool:
        futures = [pool.submit(inheritable_thread_target(task)) for task in tasks]
        wait(futures)
    for future in futures:
        future.result()


def _checkpoint(frame: DataFrame) -> DataFrame:
    return frame.localCheckpoint(eager=True)


def build_job(
    spark: SparkSession,
    cfg: PitstopConfig,
    count_loads: bool = False,
    model_uri: str | None = None,
) -> BatteryJob:
    """Create the tables and resolve the models; fails in one sentence when one is missing.

    `model_uri` pins the forecaster (replay, batch scoring) instead of following the alias.
    """
    from mlflow import MlflowClient

    from models.registry import configure_mlflow

    configure_mlflow(cfg)
    client = MlflowClient(
        tracking_uri=cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.registry_uri
    )
    paths = tables.ensure_tables(spark, cfg)
    if cfg.stream.publish_alerts:
        # An opening a crash left between MERGE and send: mark what the topic already has,
        # send the rest.
        reconcile_published(spark, cfg, paths[tables.ALERTS])
        publish_new_alerts(spark, cfg, paths[tables.ALERTS])
    return BatteryJob(
        cfg=cfg,
        paths=paths,
        champion=(
            PinnedModel(client, model_uri)
            if model_uri
            else ModelTracker(client, cfg.forecast.model, cfg.mlflow.alias)
        ),
        shadows=[
            ModelTracker(client, name, cfg.mlflow.alias, role="shadow")
            for name in cfg.forecast.shadow_models
        ],
        target=RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri),
        loads=spark.sparkContext.accumulator(0) if count_loads else None,
    )
