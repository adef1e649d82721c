"""One battery micro-batch, end to end: validate -> store -> window -> score -> alert.

The same function serves the Kafka stream, file replay and tests; the source only has
to provide Kafka's columns (key, value, topic, partition, offset, timestamp).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pyspark import Accumulator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pitstop.config import PitstopConfig
from streaming import sinks, tables, transforms
from streaming.alert_publisher import publish_new_alerts, reconcile_published
from streaming.scoring import ModelTracker, RegistryTarget, score_windows

log = logging.getLogger("pitstop.stream")


@dataclass
class BatteryJob:
    """Everything a battery micro-batch needs, built once by the driver."""

    cfg: PitstopConfig
    paths: dict[str, str]
    champion: ModelTracker
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
    """Validate, store, window, score and alert one micro-batch (replay-safe)."""
    spark = batch.sparkSession
    started = time.monotonic()
    cfg, paths = job.cfg, job.paths
    refs = [job.champion.refresh(), *(shadow.refresh() for shadow in job.shadows)]
    parsed = transforms.parse_telemetry(batch).withColumn("ingested_at", F.current_timestamp())
    parsed.persist()
    cached = [parsed]
    try:
        telemetry = spark.read.format("delta").load(paths[tables.TELEMETRY])
        on_time, late = transforms.split_late(
            transforms.valid_readings(parsed), telemetry, batch_id, cfg.stream.late_after_days
        )
        new, duplicates = transforms.split_duplicates(on_time.drop("_reason"), telemetry)
        new = new.withColumn("ingest_batch", F.lit(batch_id).cast("long")).persist()
        cached.append(new)
        rejected = (
            transforms.quarantine_rows(parsed)
            .unionByName(transforms.rejected_reading_rows(late, F.col("_reason")))
            .unionByName(transforms.rejected_reading_rows(duplicates, "duplicate"))
            .withColumn("ingested_at", F.current_timestamp())
        )
        sinks.append_once(
            rejected, paths[tables.QUARANTINE], job.app_id(spark, tables.QUARANTINE), batch_id
        )
        sinks.merge_new_readings(spark, new, paths[tables.TELEMETRY])

        telemetry = spark.read.format("delta").load(paths[tables.TELEMETRY])
        history = transforms.history_for(new, telemetry, cfg.forecast.window_days)
        windows = transforms.build_windows(history, new, cfg.forecast.window_days)
        if len(refs) > 1:
            windows = windows.persist()
            cached.append(windows)
        scored = None
        for ref in refs:
            frame = score_windows(windows, ref, job.target, job.loads)
            scored = frame if scored is None else scored.unionByName(frame)
        scored = scored.withColumn("scored_at", F.current_timestamp()).persist()
        cached.append(scored)
        sinks.upsert_forecasts(spark, scored, paths[tables.FORECASTS])

        champion = scored.where(F.col("model_role") == "champion")
        alerts = transforms.alerts_from_forecasts(champion, cfg.forecast.alert_within_days)
        sinks.merge_alerts(spark, alerts, paths[tables.ALERTS])
        sinks.close_replaced_alerts(spark, transforms.replaced_batteries(new), paths[tables.ALERTS])
        published = 0
        if cfg.stream.publish_alerts:
            published = publish_new_alerts(spark, cfg, paths[tables.ALERTS])
        log.info(
            "batch %d: %d messages, %d new readings, %d alert(s) published, %s, %.1fs",
            batch_id,
            parsed.count(),
            new.count(),
            published,
            ", ".join(f"{r.name} v{r.version}" for r in refs),
            time.monotonic() - started,
        )
    finally:
        for frame in cached:
            frame.unpersist()


def build_job(spark: SparkSession, cfg: PitstopConfig, count_loads: bool = False) -> BatteryJob:
    """Create the tables and resolve the models; fails in one sentence when one is missing."""
    from mlflow import MlflowClient
    from models.registry import configure_mlflow

    configure_mlflow(cfg)
    client = MlflowClient(
        tracking_uri=cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.registry_uri
    )
    paths = tables.ensure_tables(spark, cfg)
    if cfg.stream.publish_alerts:
        reconcile_published(spark, cfg, paths[tables.ALERTS])
    return BatteryJob(
        cfg=cfg,
        paths=paths,
        champion=ModelTracker(client, cfg.forecast.model, cfg.mlflow.alias),
        shadows=[
            ModelTracker(client, name, cfg.mlflow.alias, role="shadow")
            for name in cfg.forecast.shadow_models
        ],
        target=RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri),
        loads=spark.sparkContext.accumulator(0) if count_loads else None,
    )
