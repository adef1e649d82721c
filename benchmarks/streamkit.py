"""What the stream benchmarks share: a broker and config of their own, a champion, a feed,
per-stage timing of every micro-batch, and the sustained-latency measurement."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.config import PitstopConfig, StorageConfig, TopicsConfig, load_config

log = logging.getLogger("pitstop.bench")


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_bench_broker(base: PitstopConfig, data_dir: Path, topics: dict[str, int]) -> Any:
    """A broker of its own on free loopback ports, with `topics`."""
    from broker.process import start_broker

    return start_broker(
        base, data_dir=data_dir, port=free_port(), controller_port=free_port(), topics=topics
    )


def bench_config(root: Path, bootstrap: str, name: str, topic: str, **stream: Any) -> PitstopConfig:
    """The local configuration with lake/checkpoints under root/name, reading `topic`, and the
    temporary MLflow store under root."""
    cfg = load_config("local")
    return cfg.model_copy(
        update={
            "storage": StorageConfig(
                lake=str(root / name / "lake"), checkpoints=str(root / name / "checkpoints")
            ),
            "mlflow": cfg.mlflow.model_copy(
                update={
                    "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                    "artifact_root": str(root / "mlflow-artifacts"),
                }
            ),
            "kafka": cfg.kafka.model_copy(
                update={
                    "bootstrap_servers": bootstrap,
                    "topics": TopicsConfig(
                        telemetry=topic, notes="bench-notes", alerts="bench-alerts"
                    ),
                }
            ),
            "stream": cfg.stream.model_copy(update={"query_name": f"bench-{name}", **stream}),
        }
    )


def train_champion(cfg: PitstopConfig) -> str:
    """Train the default LSTM (2x64, window 60, direct 30 head) briefly; its models:/ URI."""
    from apps.training_data import simulated_readings
    from models.training.rnn import train_rnn

    readings = simulated_readings(batteries=40, days=200, seed=3)
    result = train_rnn(
        cfg, readings, epochs=2, max_windows=2000, time_budget_s=30, seed=0, force=True
    )
    return f"models:/{result.model_name}/{result.version}"


def simulate_lines(cfg: PitstopConfig, out: Path, batteries: int, days: int) -> list[bytes]:
    """The simulator's telemetry lines (files sink), in the order it emitted them."""
    from simulator.run import run_simulation

    run_simulation(
        cfg, sink="files", batteries=batteries, days=days, seed=11, output_dir=out, notes=False
    )
    # The files sink names its output after the configured topic.
    path = out / f"{cfg.kafka.topics.telemetry}.jsonl"
    if not path.exists():
        path = next(p for p in out.glob("*.jsonl") if "telemetry" in p.name)
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def key_of(line: bytes) -> bytes:
    return json.loads(line)["battery_id"].encode()


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """Every line to `topic`, keyed by battery_id."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for line in lines:
        while True:
            try:
                producer.produce(topic, key=key_of(line), value=line)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("could not deliver every reading to the benchmark topic")


def paced_producer(bootstrap: str, topic: str, lines: list[bytes], rate: float, stop: Any):
    """Produce `lines` at `rate` per second (10 ms ticks) until done or `stop` is set."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    start, sent = time.perf_counter(), 0
    while sent < len(lines) and not stop.is_set():
        due = min(len(lines), int((time.perf_counter() - start) * rate) + 1)
        for line in lines[sent:due]:
            while True:
                try:
                    producer.produce(topic, key=key_of(line), value=line)
                    break
                except BufferError:
                    producer.poll(0.05)
        sent = max(sent, due)
        producer.poll(0)
        time.sleep(0.01)
    producer.flush(30)
    stop.sent = sent


class StageClock:
    """Times each stage of every battery micro-batch by wrapping the flow's steps (the flow
    itself is unchanged), and counts the Spark jobs each micro-batch runs.

    Stage times are wall-clock per stage; the sinks run side by side in threads, so they
    overlap and their sum exceeds the batch's total.
    """

    def __init__(self) -> None:
        self.batches: list[dict[str, float]] = []
        self.finished: dict[int, float] = {}  # batch id -> wall clock when it completed
        self._current: dict[str, float] | None = None

    def _add(self, stage: str, seconds: float) -> None:
        if self._current is not None:
            self._current[stage] = self._current.get(stage, 0.0) + seconds

    def _timed(self, fn, name):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                label = name(args) if callable(name) else name
                self._add(label, time.perf_counter() - start)

        return wrapper

    def install(self) -> None:
        """Wrap the battery flow; call before any query starts (it binds the batch function)."""
        from streaming.battery import flow
        from streaming.query import FlowContext

        flow.materialise = self._timed(flow.materialise, "compute: read, parse, state, score")
        FlowContext.append = self._timed(FlowContext.append, lambda a: f"append {a[3]}")
        flow.update_alerts = self._timed(flow.update_alerts, "alerts: plan, MERGE, publish")
        flow.publish_openings = self._timed(flow.publish_openings, "  of which publish")
        process = flow.process_battery_batch

        def batch(job, frame, batch_id):
            spark = frame.sparkSession
            tracker = spark.sparkContext.statusTracker()
            group = spark.sparkContext.getLocalProperty("spark.jobGroup.id")
            before = set(tracker.getJobIdsForGroup(group))
            self._current = {}
            start = time.perf_counter()
            try:
                process(job, frame, batch_id)
            finally:
                stages = self._current or {}
                stages["total"] = time.perf_counter() - start
                stages["spark_jobs"] = len(set(tracker.getJobIdsForGroup(group)) - before)
                self.finished[batch_id] = time.time()
                self.batches.append(stages)
                self._current = None

        flow.process_battery_batch = batch

    def summary(self, skip_first: bool = False) -> dict[str, float]:
        """Mean per stage over the recorded micro-batches (seconds; jobs for spark_jobs)."""
        batches = self.batches[1:] if skip_first and len(self.batches) > 1 else self.batches
        keys = sorted({k for b in batches for k in b})
        return {k: float(np.mean([b.get(k, 0.0) for b in batches])) for k in keys}


def codegen_compilations(spark) -> int:
    """Janino compilations so far in this JVM (Spark's codegen metrics)."""
    metrics = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics
    return int(metrics.METRIC_COMPILATION_TIME().getCount())


def sustained(
    spark,
    cfg: PitstopConfig,
    clock: StageClock,
    lines: list[bytes],
    rate: float,
    seconds: float,
    monitor: bool = False,
) -> dict[str, Any]:
    """Event-to-alert latency at `rate` readings/s for `seconds`: from a reading's Kafka
    timestamp to the end of the micro-batch that stored, scored and alerted on it (every sink
    committed). The first micro-batch (worker start-up, seeding) counts too. With `monitor`,
    the forecast accuracy monitor runs beside the stream in the same session (its cost per
    micro-batch is reported); with `stream.metrics_port` set, the job's metrics are on."""
    from pyspark.sql import functions as F

    from apps.demo import end_offsets
    from streaming import tables
    from streaming.battery.flow import build_job, start_battery_query
    from streaming.metrics import start_metrics
    from streaming.progress import caught_up

    job = build_job(spark, cfg, metrics=start_metrics(spark, cfg))
    clock.batches.clear()
    compiled_before = codegen_compilations(spark)
    query = start_battery_query(spark, job, available_now=False)
    watcher = None
    if monitor:
        from streaming.monitor.flow import build_monitor_job, start_monitor_query

        watcher = start_monitor_query(spark, build_monitor_job(spark, cfg))
    wanted = lines[: int(rate * seconds)]
    stop = threading.Event()
    producer = threading.Thread(
        target=paced_producer,
        args=(cfg.kafka.bootstrap_servers, cfg.kafka.topics.telemetry, wanted, rate, stop),
    )
    started = time.perf_counter()
    producer.start()
    producer.join(seconds * 3)
    stop.set()
    producer.join()
    produce_s = time.perf_counter() - started
    target = end_offsets(cfg.kafka.bootstrap_servers, cfg.kafka.topics.telemetry)
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)
    deadline = time.monotonic() + 600
    while not caught_up(checkpoint, target) and time.monotonic() < deadline:
        if query.exception():
            raise RuntimeError(f"live query failed: {query.exception()}")
        time.sleep(0.5)
    drain_s = time.perf_counter() - started - produce_s
    query.stop()
    monitored = monitor_cost(spark, cfg, watcher) if watcher is not None else None
    compiled = codegen_compilations(spark) - compiled_before
    read = lambda name: spark.read.format("delta").load(job.paths[name])  # noqa: E731
    stored = read(tables.TELEMETRY).select(
        "ingest_batch", (F.unix_micros("kafka_timestamp") / 1e6).alias("sent_at")
    )
    latency = np.array(
        [clock.finished[r.ingest_batch] - r.sent_at for r in stored.collect()], dtype=float
    )
    totals = [b["total"] for b in clock.batches[1:]] or [0.0]
    sent = getattr(stop, "sent", len(wanted))
    return {
        "target_rate_per_s": rate,
        "sent": sent,
        "achieved_rate_per_s": sent / produce_s,
        "produce_s": produce_s,
        "drain_after_produce_s": drain_s,
        "stored": int(latency.size),
        "forecasts": read(tables.FORECASTS).count(),
        "micro_batches": len(clock.batches),
        "micro_batch_p50_s": float(np.median(totals)),
        "codegen_compilations_per_batch": compiled / max(1, len(clock.batches)),
        "p50_s": float(np.percentile(latency, 50)) if latency.size else None,
        "p99_s": float(np.percentile(latency, 99)) if latency.size else None,
        "max_s": float(latency.max()) if latency.size else None,
        "stages_s": clock.summary(skip_first=True),
        "first_batch_s": clock.batches[0]["total"] if clock.batches else None,
        "metrics_on": bool(cfg.stream.metrics_port),
        "monitor": monitored,
    }


def monitor_cost(spark, cfg: PitstopConfig, query) -> dict[str, Any]:
    """The monitor's micro-batches while the stream ran: seconds each, readings, pairs."""
    from streaming import tables

    progress = [p for p in query.recentProgress if p.numInputRows]
    query.stop()
    durations = [p.durationMs["triggerExecution"] / 1000 for p in progress]
    pairs = spark.read.format("delta").load(cfg.storage.table(tables.FORECAST_ACCURACY)).count()
    return {
        "micro_batches": len(progress),
        "readings": int(sum(p.numInputRows for p in progress)),
        "accuracy_rows": pairs,
        "batch_p50_s": float(np.median(durations)) if durations else None,
        "batch_max_s": float(max(durations)) if durations else None,
        "batch_s": durations,
    }


def print_monitor(cost: dict[str, Any] | None) -> None:
    if cost:
        print(
            f"  monitor beside it: {cost['micro_batches']} micro-batches, "
            f"{cost['readings']} readings -> {cost['accuracy_rows']} accuracy rows, "
            f"p50 {cost['batch_p50_s']:.2f} s, max {cost['batch_max_s']:.2f} s per micro-batch"
        )


def print_stages(stages: dict[str, float]) -> None:
    for stage, value in stages.items():
        unit = "jobs" if stage == "spark_jobs" else "s"
        print(f"    {stage:<40} {value:>10.2f} {unit}/batch")
