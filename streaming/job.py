"""Pitstop's streaming job: Kafka -> validate -> battery state -> forecast -> Delta and alerts.

Run it with `spark-submit --packages <coordinates> streaming/job.py [--env local]`
(`pitstop stream` does exactly that). It starts the battery flow (`streaming.battery.flow`)
and the component-notes flow (`streaming.notes.flow`); every write is idempotent, so a job
killed at any point and restarted from its checkpoint loses nothing and duplicates nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from pyspark.sql import SparkSession

if __package__ in (None, ""):  # executed as a file by spark-submit
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import ConfigError, PitstopConfig, load_config  # noqa: E402
from core.process_exit import exit_without_teardown  # noqa: E402
from streaming.battery.flow import build_job, start_battery_query  # noqa: E402
from streaming.metrics import start_metrics  # noqa: E402
from streaming.model_refs import ModelUnavailableError  # noqa: E402
from streaming.session import build_spark_session  # noqa: E402

log = logging.getLogger("pitstop.stream")

STOP_FILE = "STOP"


def start_queries(spark: SparkSession, cfg: PitstopConfig, available_now: bool = False) -> list:
    """The battery query, the notes query when enabled and a compliance model exists, and the
    forecast accuracy monitor when `monitor.with_stream`; metrics served when configured."""
    metrics = start_metrics(spark, cfg)
    queries = [start_battery_query(spark, build_job(spark, cfg, metrics=metrics), available_now)]
    if cfg.stream.score_notes:
        from streaming.notes.flow import build_notes_job, start_notes_query

        try:
            notes_job = build_notes_job(spark, cfg, metrics=metrics)
        except ModelUnavailableError as exc:
            log.warning("Not scoring component notes: %s", exc)
        else:
            queries.append(start_notes_query(spark, notes_job, available_now))
    if cfg.monitor.with_stream:
        from streaming.monitor.flow import build_monitor_job, start_monitor_query

        queries.append(start_monitor_query(spark, build_monitor_job(spark, cfg), available_now))
    return queries


def run(cfg: PitstopConfig, available_now: bool = False) -> None:
    """Run the job until it is stopped (SIGTERM/SIGINT or a STOP file in the checkpoint root)."""
    spark = build_spark_session(cfg)
    queries = start_queries(spark, cfg, available_now)
    stop_file = Path(cfg.storage.checkpoints) / STOP_FILE
    stopping = []

    def request_stop(signum, _frame):
        log.info("Signal %d: stopping after the current micro-batch", signum)
        stopping.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("Streaming from %s into %s", cfg.kafka.bootstrap_servers, cfg.storage.lake)
    while all(q.isActive for q in queries) and not stopping:
        if "://" not in cfg.storage.checkpoints and stop_file.exists():
            stop_file.unlink(missing_ok=True)
            log.info("Stop requested through %s", stop_file)
            break
        queries[0].awaitTermination(1)
    if available_now:
        for query in queries:
            query.awaitTermination()
    for query in queries:
        if query.isActive:
            query.stop()
    failed = [q for q in queries if q.exception()]
    spark.stop()
    if failed:
        raise RuntimeError(f"The streaming query {failed[0].name} failed: {failed[0].exception()}")


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
    code = main()
    if "DATABRICKS_RUNTIME_VERSION" in os.environ:
        sys.exit(code)  # the cluster's Python process is not ours to end
    exit_without_teardown(code)  # spark-submit: run() stopped Spark; see core.process_exit
