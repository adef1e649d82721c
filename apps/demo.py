"""`make demo`: every box of the architecture, for real, on this machine.

Broker up -> a champion forecaster (trained once) -> the streaming job under spark-submit ->
the simulator's fleet into Kafka -> wait until the job has committed every offset ->
alerts from Delta -> everything shut down. The demo starts from empty topics and tables.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from core.config import PitstopConfig
from core.errors import PitstopError
from core.lake import count_rows

log = logging.getLogger(__name__)

# A few messages that break the contract, so the demo shows quarantine at work.
MALFORMED_MESSAGES: tuple[bytes, ...] = (
    b"this is not json",
    b'{"schema_version": 1, "car_id": "C-demo", "battery_id": "B-demo"}',
    b'{"schema_version": 1, "car_id": "C-demo", "battery_id": "B-demo", "date": "2024-02-30",'
    b' "battery_age_days": 3, "number_of_trips": 1, "daily_trip_duration": 0.5,'
    b' "daily_cycles_used": 1.0, "lifetime_cycles_used": 3.0, "battery_rated_cycles": 500}',
    b'{"schema_version": 1, "car_id": "C-demo", "battery_id": "B-demo", "date": "2024-02-03",'
    b' "battery_age_days": 3.5, "number_of_trips": 1, "daily_trip_duration": 0.5,'
    b' "daily_cycles_used": 1.0, "lifetime_cycles_used": 3.0, "battery_rated_cycles": 500}',
    b'{"schema_version": 1, "car_id": "C-demo", "battery_id": "B-demo", "date": "2024-02-03",'
    b' "battery_age_days": 3, "number_of_trips": 1, "daily_trip_duration": 25,'
    b' "daily_cycles_used": 1.0, "lifetime_cycles_used": 3.0, "battery_rated_cycles": 500}',
)


class DemoError(PitstopError):
    """The demo could not finish; the message says where to look."""


@dataclass
class DemoSummary:
    """What one demo run did."""

    events_sent: int
    telemetry_rows: int
    quarantined: int
    alerts: pd.DataFrame
    elapsed_s: float
    stream_s: float

    def line(self) -> str:
        """The one-line summary printed at the end."""
        rate = self.events_sent / self.stream_s if self.stream_s > 0 else 0.0
        return (
            f"{self.events_sent:,} events in, {self.telemetry_rows:,} stored, "
            f"{self.quarantined:,} quarantined, {len(self.alerts):,} open battery alerts, "
            f"{self.elapsed_s:.0f}s elapsed ({rate:,.0f} events/s from first send to last commit)"
        )


def run_demo(
    cfg: PitstopConfig,
    batteries: int | None = None,
    days: int | None = None,
    console: Console | None = None,
) -> DemoSummary:
    """Run the whole pipeline once on a simulated fleet and return what it produced."""
    from apps.alerts import query_alerts
    from broker.process import broker_status, start_broker, stop_broker
    from broker.topics import recreate_topics

    console = console or Console()
    started = time.monotonic()
    batteries = batteries or cfg.simulator.batteries
    days = days or cfg.simulator.days
    was_running = broker_status(cfg).running
    with console.status("Starting the Kafka broker"):
        broker = start_broker(cfg)
    job = None
    try:
        topics = {
            cfg.kafka.topics.telemetry: cfg.broker.partitions.get(cfg.kafka.topics.telemetry, 4)
        }
        recreate_topics(broker.bootstrap, topics)
        _ensure_model(cfg, console)
        _reset_outputs(cfg)
        console.print("Starting the streaming job (spark-submit)")
        job = _start_job(cfg)
        stream_started = time.monotonic()
        sent = _simulate(cfg, batteries, days)
        sent += _send_malformed(cfg)
        with console.status("Waiting for the job to process every event"):
            _wait_until_caught_up(cfg, job, broker.bootstrap, cfg.kafka.topics.telemetry)
        stream_s = time.monotonic() - stream_started
        _stop_job(cfg, job)
        job = None
        alerts = query_alerts(cfg, "battery")
        return DemoSummary(
            events_sent=sent,
            telemetry_rows=count_rows(cfg, "telemetry"),
            quarantined=count_rows(cfg, "quarantine"),
            alerts=alerts,
            elapsed_s=time.monotonic() - started,
            stream_s=stream_s,
        )
    finally:
        if job is not None:
            _stop_job(cfg, job)
        if not was_running:
            stop_broker(cfg)


CONSOLE_ADDRESS = "http://127.0.0.1:8501/"
MLFLOW_UI_ADDRESS = "http://127.0.0.1:5000/"


def next_steps(cfg: PitstopConfig) -> list[str]:
    """How to look at what the demo left behind: the console and the MLflow UI, each with the
    command that starts it (the demo itself leaves nothing running)."""
    bin_dir = Path(sys.executable).parent
    try:
        bin_dir = Path(os.path.relpath(bin_dir))
    except ValueError:  # another drive (Windows): keep it absolute
        pass
    return [
        f"Console:   {bin_dir / 'pitstop'} console   then open {CONSOLE_ADDRESS}",
        f"MLflow UI: {bin_dir / 'mlflow'} ui --backend-store-uri {cfg.mlflow.tracking_uri} "
        f"--port 5000   then open {MLFLOW_UI_ADDRESS}",
    ]


def _ensure_model(cfg: PitstopConfig, console: Console) -> None:
    from models.training.rnn import ensure_champion

    def training_readings() -> pd.DataFrame:
        from models.forecasting.data import load_readings
        from simulator.run import run_simulation

        folder = Path(cfg.home) / "training-fleet"
        if not (folder / "battery-telemetry.jsonl").exists():
            console.print("Simulating a training fleet (different seed from the demo fleet)")
            run_simulation(
                cfg,
                sink="files",
                batteries=cfg.simulator.batteries,
                days=cfg.simulator.days,
                start_date=cfg.simulator.start_date,
                seed=cfg.simulator.seed + 1000,
                output_dir=folder,
                notes=False,
                progress=True,
            )
        return load_readings(str(folder))

    with console.status("Checking for a champion forecaster"):
        trained = ensure_champion(cfg, training_readings)
    if trained is not None:
        console.print(f"Trained and registered {trained.model_name} v{trained.version}")


def _reset_outputs(cfg: PitstopConfig) -> None:
    for location in (cfg.storage.lake, cfg.storage.checkpoints):
        if "://" in location:
            raise DemoError(f"The demo runs on local storage only, not {location}.")
        shutil.rmtree(location, ignore_errors=True)
        Path(location).mkdir(parents=True, exist_ok=True)


def _job_log(cfg: PitstopConfig) -> Path:
    path = Path(cfg.home) / "logs" / "stream.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _start_job(cfg: PitstopConfig) -> subprocess.Popen:
    from streaming.submit import config_environment, spark_submit_command

    log_file = _job_log(cfg).open("w", encoding="utf-8")
    return subprocess.Popen(
        spark_submit_command(cfg),
        env=config_environment(cfg),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _simulate(cfg: PitstopConfig, batteries: int, days: int) -> int:
    from simulator.run import run_simulation

    summary = run_simulation(
        cfg,
        sink="kafka",
        batteries=batteries,
        days=days,
        start_date=cfg.simulator.start_date,
        seed=cfg.simulator.seed,
        output_dir=Path(cfg.simulator.output),
        notes=False,
        progress=True,
    )
    if summary.failed:
        raise DemoError(f"{summary.failed} events could not be delivered to Kafka.")
    return summary.delivered


def _send_malformed(cfg: PitstopConfig) -> int:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers})
    for payload in MALFORMED_MESSAGES:
        producer.produce(cfg.kafka.topics.telemetry, key=b"B-demo", value=payload)
    if producer.flush(30):
        raise DemoError("Could not deliver the demo's malformed messages to Kafka.")
    return len(MALFORMED_MESSAGES)


def end_offsets(bootstrap: str, topic: str) -> dict[str, dict[int, int]]:
    """The high watermark of every partition of `topic`."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pitstop-offsets"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            topic: {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions
            }
        }
    finally:
        consumer.close()


def _wait_until_caught_up(
    cfg: PitstopConfig, job: subprocess.Popen, bootstrap: str, topic: str, timeout_s: float = 1800
) -> None:
    from streaming.progress import caught_up

    target = end_offsets(bootstrap, topic)
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)
    deadline = time.monotonic() + timeout_s
    while not caught_up(checkpoint, target):
        if job.poll() is not None:
            raise DemoError(
                f"The streaming job exited with code {job.returncode}; see {_job_log(cfg)}."
            )
        if time.monotonic() > deadline:
            raise DemoError(
                f"The job did not catch up within {timeout_s:.0f}s; see {_job_log(cfg)}."
            )
        time.sleep(1)


def _stop_job(cfg: PitstopConfig, job: subprocess.Popen, timeout_s: float = 60) -> None:
    from streaming.job import STOP_FILE

    if job.poll() is not None:
        return
    Path(cfg.storage.checkpoints, STOP_FILE).touch()
    try:
        job.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("The job did not stop within %.0fs; terminating it", timeout_s)
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
