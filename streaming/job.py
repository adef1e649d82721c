"""Pitstop's streaming job: Kafka -> validate -> Delta -> forecast -> alerts.

Run it with `spark-submit --packages <coordinates> streaming/job.py [--env local]`
(`pitstop stream` does exactly that). Each micro-batch is read -> transform -> write in
`process_telemetry_batch`; every write is idempotent, so a job killed at any point and
restarted from its checkpoint loses nothing and duplicates nothing.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyspark import Accumulator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

if __package__ in (None, ""):  # executed as a file by spark-submit
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pitstop.config import ConfigError, PitstopConfig, load_config  # noqa: E402
from streaming import sinks, tables, transforms  # noqa: E402
from streaming.scoring import (  # noqa: E402
    ModelTracker,
    ModelUnavailableError,
    RegistryTarget,
    score_windows,
)
from streaming.session import build_spark_session  # noqa: E402
from streaming.sources import read_kafka_stream  # noqa: E402

log = logging.getLogger("pitstop.stream")

STOP_FILE = "STOP"


@dataclass
class BatteryJob:
    """Everything a battery micro-batch needs, built once by the driver."""

    cfg: PitstopConfig
    paths: dict[str, str]
    tracker: ModelTracker
    target: RegistryTarget
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
    ref = job.tracker.refresh()
    parsed = transforms.parse_telemetry(batch).withColumn("ingested_at", F.current_timestamp())
    parsed.persist()
    try:
        telemetry = spark.read.format("delta").load(job.paths[tables.TELEMETRY])
        new, duplicates = transforms.split_duplicates(transforms.valid_readings(parsed), telemetry)
        new.persist()
        rejected = transforms.quarantine_rows(parsed).unionByName(
            transforms.duplicate_quarantine_rows(duplicates).withColumn(
                "ingested_at", F.current_timestamp()
            )
        )
        sinks.append_once(
            rejected,
            job.paths[tables.QUARANTINE],
            job.app_id(spark, tables.QUARANTINE),
            batch_id,
        )
        sinks.merge_new_readings(spark, new, job.paths[tables.TELEMETRY])

        telemetry = spark.read.format("delta").load(job.paths[tables.TELEMETRY])
        window_days = job.cfg.forecast.window_days
        history = transforms.history_for(new, telemetry, window_days)
        windows = transforms.build_windows(history, new, window_days)
        scored = score_windows(windows, ref, job.target, job.loads).withColumn(
            "scored_at", F.current_timestamp()
        )
        scored.persist()
        sinks.upsert_forecasts(spark, scored, job.paths[tables.FORECASTS])
        alerts = transforms.alerts_from_forecasts(scored, job.cfg.forecast.alert_within_days)
        sinks.merge_alerts(spark, alerts, job.paths[tables.ALERTS])
        log.info(
            "batch %d: %d readings, %d new, model %s v%s, %.1fs",
            batch_id,
            parsed.count(),
            new.count(),
            ref.name,
            ref.version,
            time.monotonic() - started,
        )
        scored.unpersist()
        new.unpersist()
    finally:
        parsed.unpersist()


def start_battery_query(spark: SparkSession, job: BatteryJob, available_now: bool = False):
    """Start the battery-telemetry query (Kafka -> foreachBatch -> Delta)."""
    cfg = job.cfg
    stream = read_kafka_stream(spark, cfg, cfg.kafka.topics.telemetry)
    writer = (
        stream.writeStream.queryName(cfg.stream.query_name)
        .option("checkpointLocation", cfg.storage.checkpoint(cfg.stream.query_name))
        .foreachBatch(lambda frame, batch_id: process_telemetry_batch(job, frame, batch_id))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{cfg.stream.trigger_seconds} seconds")
    return writer.start()


def build_job(spark: SparkSession, cfg: PitstopConfig, count_loads: bool = False) -> BatteryJob:
    """Create the tables and resolve the model; fails in one sentence when the model is missing."""
    from mlflow import MlflowClient
    from models.registry import configure_mlflow

    configure_mlflow(cfg)
    client = MlflowClient(
        tracking_uri=cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.registry_uri
    )
    tracker = ModelTracker(client, cfg.forecast.model, cfg.mlflow.alias)
    return BatteryJob(
        cfg=cfg,
        paths=tables.ensure_tables(spark, cfg),
        tracker=tracker,
        target=RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri),
        loads=spark.sparkContext.accumulator(0) if count_loads else None,
    )


def run(cfg: PitstopConfig, available_now: bool = False) -> None:
    """Run the job until it is stopped (SIGTERM/SIGINT or a STOP file in the checkpoint root)."""
    spark = build_spark_session(cfg)
    job = build_job(spark, cfg)
    query = start_battery_query(spark, job, available_now)
    stop_file = Path(cfg.storage.checkpoints) / STOP_FILE
    stopping = []

    def request_stop(signum, _frame):
        log.info("Signal %d: stopping after the current micro-batch", signum)
        stopping.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("Streaming from %s into %s", cfg.kafka.bootstrap_servers, cfg.storage.lake)
    while query.isActive and not stopping:
        if "://" not in cfg.storage.checkpoints and stop_file.exists():
            stop_file.unlink(missing_ok=True)
            log.info("Stop requested through %s", stop_file)
            break
        query.awaitTermination(1)
    if query.isActive:
        query.stop()
    if query.exception():
        raise RuntimeError(f"The streaming query failed: {query.exception()}")
    spark.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point for spark-submit."""
    parser = argparse.ArgumentParser(prog="streaming/job.py", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="configuration environment (default local)")
    parser.add_argument(
        "--available-now", action="store_true", help="process what is in the topic, then stop"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        cfg = load_config(args.env)
        run(cfg, available_now=args.available_now)
    except (ConfigError, ModelUnavailableError) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
