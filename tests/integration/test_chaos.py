"""Exactly once under failure: SIGKILL the spark-submit job repeatedly, and lose the broker.

Each scenario feeds the real broker, runs the real `spark-submit` job, restarts it from its
checkpoint and then checks every table: each valid reading stored once, each invalid one
quarantined once, one forecast per reading, no duplicate open alert, each alert opening
published once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from apps.demo import end_offsets
from core.config import PitstopConfig
from core.lake import read_table
from streaming.progress import caught_up
from streaming.submit import config_environment, spark_submit_command
from tests.integration.test_stream_e2e import stream_config, topic_keys

pytestmark = pytest.mark.integration

BAD = [b"garbage %d", b'{"schema_version": 1, "battery_id": "B-bad-%d"}']


def job_environment(cfg: PitstopConfig) -> dict[str, str]:
    """What the job subprocess needs to see `cfg` (it loads config from files + variables)."""
    env = config_environment(cfg)
    # Many small micro-batches, so kills land mid-batch and between batches.
    env["PITSTOP__STREAM__MAX_OFFSETS_PER_TRIGGER"] = "20000"
    env["PITSTOP__STREAM__TRIGGER_SECONDS"] = "0.5"
    return env


def start_job(cfg: PitstopConfig, log: Path) -> subprocess.Popen:
    # A SIGKILLed job cannot remove its Spark scratch dir (~100 MB of jars); keep it under
    # the test's tmp_path, which pytest prunes, instead of /tmp.
    scratch = log.parent / "spark-local"
    scratch.mkdir(exist_ok=True)
    return subprocess.Popen(
        spark_submit_command(cfg),
        env={**job_environment(cfg), "SPARK_LOCAL_DIRS": str(scratch)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill(job: subprocess.Popen) -> None:
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def feed(cfg: PitstopConfig, recording: Path) -> int:
    """Produce a recorded fleet's readings to the telemetry topic; returns how many."""
    lines = (recording / "battery-telemetry.jsonl").read_bytes().splitlines()
    producer = Producer(
        {"bootstrap.servers": cfg.kafka.bootstrap_servers, "linger.ms": 20, "acks": "all"}
    )
    for line in lines:
        # Keyed by battery as the contract says, so a battery's readings stay in order.
        key = json.loads(line)["battery_id"].encode()
        producer.produce(cfg.kafka.topics.telemetry, key=key, value=line)
        producer.poll(0)
    assert producer.flush(60) == 0
    return len(lines)


def feed_rejects(cfg: PitstopConfig, recording: Path, duplicates: int, bad: int) -> None:
    """Produce repeats of recorded readings and broken messages."""
    lines = (recording / "battery-telemetry.jsonl").read_bytes().splitlines()
    rng = random.Random(3)
    repeats = rng.sample(range(len(lines)), duplicates)
    producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers, "acks": "all"})
    for index in repeats:
        key = json.loads(lines[index])["battery_id"].encode()
        producer.produce(cfg.kafka.topics.telemetry, key=key, value=lines[index])
    for i in range(bad):
        producer.produce(cfg.kafka.topics.telemetry, value=BAD[i % 2] % i)
    assert producer.flush(60) == 0


def wait_caught_up(cfg: PitstopConfig, job: subprocess.Popen, target, timeout_s: float) -> None:
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)
    deadline = time.monotonic() + timeout_s
    while not caught_up(checkpoint, target):
        assert job.poll() is None, f"the job exited with {job.returncode}"
        assert time.monotonic() < deadline, "the job did not catch up in time"
        time.sleep(1)


def assert_exactly_once(cfg: PitstopConfig, valid: int, duplicates: int, bad: int) -> None:
    telemetry = read_table(cfg, "telemetry")
    quarantine = read_table(cfg, "quarantine")
    forecasts = read_table(cfg, "battery_forecasts")
    alerts = read_table(cfg, "battery_alerts")
    assert len(telemetry) == valid
    assert not telemetry.duplicated(["battery_id", "date"]).any()
    # A repeated old reading is quarantined as late (it is also past the watermark).
    repeated = quarantine["reason"].str.match(r"^(duplicate|late: )")
    assert repeated.sum() == duplicates
    assert (~repeated).sum() == bad
    assert not quarantine.duplicated(["topic", "partition", "offset"]).any()
    assert len(forecasts) == valid
    assert not forecasts.duplicated(["battery_id", "date", "model_name"]).any()
    assert len(alerts) > 0
    assert not alerts["alert_id"].duplicated().any()
    assert not alerts[alerts["status"] == "open"]["battery_id"].duplicated().any()
    published = topic_keys(cfg.kafka.bootstrap_servers, cfg.kafka.topics.alerts)
    assert len(published) == len(set(published))
    assert set(published) == set(alerts.loc[alerts["published_at"].notna(), "alert_id"])


def scrape(port: int) -> dict[tuple, float]:
    """The job's /metrics, as Prometheus reads them: (name, sorted labels) -> value."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def assert_metrics_match_the_tables(
    cfg: PitstopConfig, port: int, valid: int, duplicates: int, bad: int
) -> None:
    """The job's Prometheus metrics say what its tables and topic hold (one job, no restart)."""
    from mlflow.tracking import MlflowClient

    # Progress reports reach the listener a moment after the batch commits: wait for the
    # report of the last batch (no lag left) before reading the rest.
    deadline = time.monotonic() + 60
    while True:
        got = scrape(port)
        lag = [v for (name, _), v in got.items() if name == "pitstop_kafka_lag"]
        if (len(lag) == 4 and sum(lag) == 0) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(lag) == 4 and sum(lag) == 0  # caught up on each of the 4 partitions
    by_reason = {
        dict(labels)["reason"]: value
        for (name, labels), value in got.items()
        if name == "pitstop_quarantined_total"
    }
    assert by_reason.get("late", 0) + by_reason.get("duplicate", 0) == duplicates
    assert by_reason["not_json"] == bad / 2 and by_reason["missing_field"] == bad / 2
    assert sum(by_reason.values()) == duplicates + bad
    # Every new reading's latency was observed once, when its batch committed.
    assert got[("pitstop_event_to_alert_seconds_count", ())] == valid
    assert got[("pitstop_event_to_alert_seconds_sum", ())] > 0
    published = topic_keys(cfg.kafka.bootstrap_servers, cfg.kafka.topics.alerts)
    assert got[("pitstop_alerts_opened_total", (("kind", "battery"),))] == len(published)
    query = (("query", cfg.stream.query_name),)
    assert got[("pitstop_last_batch_id", query)] >= 0
    assert got[("pitstop_batch_duration_seconds_count", query)] >= 1
    assert ("pitstop_input_rows_per_second", query) in got
    registry = MlflowClient(
        cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri or cfg.mlflow.tracking_uri
    )
    champion = registry.get_model_version_by_alias(cfg.forecast.model, cfg.mlflow.alias)
    version = str(champion.version)
    info = (("name", cfg.forecast.model), ("role", "champion"), ("version", version))
    assert got[("pitstop_model_version_info", info)] == 1


def simulate(cfg: PitstopConfig, folder: Path, batteries: int, days: int) -> None:
    from simulator.run import run_simulation

    run_simulation(
        cfg, sink="files", batteries=batteries, days=days, seed=21, output_dir=folder, notes=False
    )


@pytest.mark.slow
def test_sigkill_five_times_over_100k_readings_loses_and_duplicates_nothing(
    tmp_path, kafka_bootstrap, kafka_topic_factory, trained_config
):
    cfg = stream_config(tmp_path, kafka_bootstrap, kafka_topic_factory, trained_config)
    simulate(trained_config, tmp_path / "fleet", batteries=260, days=400)
    valid = feed(cfg, tmp_path / "fleet")
    assert valid >= 100_000
    log = tmp_path / "job.log"
    rng = random.Random(7)
    for kill_number in range(5):
        job = start_job(cfg, log)
        time.sleep(rng.uniform(22, 45))  # ~20 s to start, then somewhere mid-stream
        if kill_number == 2:
            feed_rejects(cfg, tmp_path / "fleet", duplicates=40, bad=60)
        kill(job)
    job = start_job(cfg, log)
    try:
        wait_caught_up(cfg, job, end_offsets(kafka_bootstrap, cfg.kafka.topics.telemetry), 900)
    finally:
        kill(job)
    assert_exactly_once(cfg, valid, duplicates=40, bad=60)


def test_broker_down_for_30s_mid_run_loses_and_duplicates_nothing(tmp_path, trained_config):
    from broker.process import start_broker, stop_broker
    from tests.integration.conftest import free_port

    base = trained_config
    ports = {"port": free_port(), "controller_port": free_port()}
    data_dir = tmp_path / "kafka"
    broker = start_broker(base, data_dir=data_dir, **ports)
    job = None
    try:
        from broker.topics import ensure_topics

        names = {"telemetry": "chaos-telemetry", "notes": "chaos-notes", "alerts": "chaos-alerts"}
        ensure_topics(
            broker.bootstrap, {names["telemetry"]: 4, names["notes"]: 1, names["alerts"]: 1}
        )
        cfg = stream_config(
            tmp_path, broker.bootstrap, lambda partitions, prefix: names[prefix], trained_config
        )
        metrics_port = free_port()
        cfg = cfg.model_copy(
            update={"stream": cfg.stream.model_copy(update={"metrics_port": metrics_port})}
        )
        simulate(trained_config, tmp_path / "fleet", batteries=120, days=300)
        valid = feed(cfg, tmp_path / "fleet")
        feed_rejects(cfg, tmp_path / "fleet", duplicates=20, bad=30)
        target = end_offsets(broker.bootstrap, cfg.kafka.topics.telemetry)
        job = start_job(cfg, tmp_path / "job.log")
        time.sleep(35)  # the job is up and part-way through
        stop_broker(base, data_dir=data_dir)
        time.sleep(30)
        broker = start_broker(base, data_dir=data_dir, **ports)
        wait_caught_up(cfg, job, target, 900)
        assert_exactly_once(cfg, valid, duplicates=20, bad=30)
        assert_metrics_match_the_tables(cfg, metrics_port, valid, duplicates=20, bad=30)
    finally:
        if job is not None:
            kill(job)
        stop_broker(base, data_dir=data_dir)


def test_a_first_batch_killed_after_its_appends_is_replayed_as_new_readings(
    spark, tmp_path, kafka_bootstrap, kafka_topic_factory, trained_config
):
    """Killed after micro-batch 0 stored its readings but before Spark recorded the batch,
    the job restarts on a checkpoint with no committed batch, which it seeds from
    `telemetry`: the replayed batch must not meet its own readings there (it did once, and
    quarantined 15,713 of them as late or duplicate)."""
    from pyspark.errors import StreamingQueryException

    from streaming import checkpoints
    from streaming.battery.flow import build_job, process_battery_batch, start_battery_query
    from streaming.battery.readings import battery_history, parse_telemetry
    from streaming.query import start_query
    from streaming.sources import read_kafka_stream

    cfg = stream_config(tmp_path, kafka_bootstrap, kafka_topic_factory, trained_config)
    simulate(trained_config, tmp_path / "fleet", batteries=30, days=300)
    valid = feed(cfg, tmp_path / "fleet")
    job = build_job(spark, cfg)
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)
    messages = read_kafka_stream(spark, cfg, cfg.kafka.topics.telemetry)
    decided = battery_history(parse_telemetry(messages), job.rules, cfg.stream.state_ttl_days)

    def stored_then_killed(frame, batch_id: int) -> None:
        process_battery_batch(job, frame, batch_id)
        raise RuntimeError("killed after the sinks, before the batch commit")

    query = start_query(decided, job.context, checkpoint, stored_then_killed, 1, True)
    with pytest.raises(StreamingQueryException):
        query.awaitTermination()
    assert len(read_table(cfg, "telemetry")) == valid  # the batch's appends committed
    assert not checkpoints.committed_batches(spark, checkpoint)

    start_battery_query(spark, build_job(spark, cfg), available_now=True).awaitTermination()
    assert checkpoints.committed_batches(spark, checkpoint) == [0]
    assert_exactly_once(cfg, valid, duplicates=0, bad=0)
