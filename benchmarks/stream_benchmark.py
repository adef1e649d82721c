"""Pitstop's streaming job against its raw ceiling and against peers' scoring patterns.

One run, everything temporary (MLflow store with a freshly trained champion LSTM, a broker
on free ports, Delta tables), four measurements:
  1. raw ceiling: windows/s of the same registered model in 2 single-threaded processes;
  2. backlog: broker -> parse -> Delta -> windows -> LSTM -> forecasts -> alerts, readings/s,
     after a separate warm-up stream (as a job catching up is warm after its first batch);
  3. scoring patterns on the same ~2,000-reading micro-batches (consecutive days, with their
     history): Pitstop's `score_history` (windows built and scored in one Python call, as in
     the stream); peers score Spark-built windows with MLflow's `spark_udf` built once,
     `spark_udf` rebuilt every micro-batch, or the lab's collect -> predict -> createDataFrame;
  4. event-to-alert latency (batch committed - Kafka timestamp) with a 1 s trigger at a
     sustained ~1,000 readings/s.
Run: python benchmarks/stream_benchmark.py [--quick] [--batteries 200] [--days 400]
Writes .pitstop/bench/stream.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pitstop.config import PitstopConfig, StorageConfig, TopicsConfig, load_config  # noqa: E402

log = logging.getLogger("pitstop.bench")
BENCH_TOPICS = {
    "bench-telemetry": 4,
    "bench-live": 4,
    "bench-warmup": 4,
    "bench-alerts": 1,
    "bench-notes": 1,
}
# Readings a separate warm-up stream processes before the backlog is timed.
WARMUP_READINGS = 5_000


# ---------------------------------------------------------------- setup


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_bench_broker(base: PitstopConfig, data_dir: Path) -> Any:
    """A broker of its own on free loopback ports, with the benchmark topics."""
    from pitstop.broker import start_broker

    return start_broker(
        base,
        data_dir=data_dir,
        port=free_port(),
        controller_port=free_port(),
        topics=BENCH_TOPICS,
    )


def bench_config(root: Path, bootstrap: str, name: str, **stream: Any) -> PitstopConfig:
    """The local configuration with lake/checkpoints under root/name and the temp MLflow store."""
    cfg = load_config("local")
    topic = {"live": "bench-live", "warmup": "bench-warmup"}.get(name, "bench-telemetry")
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
    from models.data import simulated_readings
    from models.train_rnn import train_rnn

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
    path = out / f"{cfg.kafka.topics.telemetry}.jsonl"
    if not path.exists():
        path = next(p for p in out.glob("*.jsonl") if "telemetry" in p.name)
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _key(line: bytes) -> bytes:
    return json.loads(line)["battery_id"].encode()


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """Every line to `topic`, keyed by battery_id."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for line in lines:
        while True:
            try:
                producer.produce(topic, key=_key(line), value=line)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("could not deliver every reading to the benchmark topic")


# ---------------------------------------------------------------- 1. raw ceiling


def _ceiling_worker(spec: dict, ready: Any, results: Any) -> None:
    import mlflow
    import pandas as pd

    from models.pyfunc import load_forecaster

    mlflow.set_tracking_uri(spec["tracking_uri"])
    mlflow.set_registry_uri(spec["tracking_uri"])
    model = load_forecaster(spec["uri"], torch_threads=1)
    rng = np.random.default_rng(os.getpid())
    frame = pd.DataFrame(
        {
            "daily_cycles": list(rng.gamma(4.0, 0.3, (spec["batch"], spec["window"]))),
            "lifetime_cycles_used": 100.0,
            "battery_rated_cycles": 500.0,
            "battery_age_days": 100.0,
        }
    )
    model.predict(frame)  # warm-up
    ready.wait()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < spec["seconds"]:
        model.predict(frame)
        done += spec["batch"]
    results.put(done / (time.perf_counter() - start))


def raw_ceiling(tracking_uri: str, uri: str, seconds: float) -> dict[str, float]:
    """windows/s of the registered model: 2 spawned processes x 1 torch thread.

    Same shape as benchmarks/lstm_ceiling.py's ceiling, but with the trained, registered
    model through `Forecaster.predict` (encoding included, as the job runs it); the bare
    network of the same architecture is measured with lstm_ceiling's own `measure`.
    """
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from lstm_ceiling import measure

    context = mp.get_context("spawn")
    ready, results = context.Barrier(2), context.Queue()
    spec = {"tracking_uri": tracking_uri, "uri": uri, "batch": 1000, "window": 60}
    spec["seconds"] = seconds
    workers = [
        context.Process(target=_ceiling_worker, args=(spec, ready, results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    rates = [results.get(timeout=seconds + 180) for _ in workers]
    for worker in workers:
        worker.join()
    network = measure("network", 2, 1, 1000, 60, seconds)
    return {"forecaster_windows_per_s": sum(rates), "network_windows_per_s": network}


# ---------------------------------------------------------------- per-stage timing


class StageClock:
    """Wraps the pipeline's steps to time each stage of every micro-batch (no code changes).

    Stage times are wall-clock per stage; the pipeline runs its sinks in parallel threads,
    so they overlap and their sum exceeds the batch's total.
    """

    CHECKPOINTS = ("parse", "lookup_stored", "classify", "windows+score")

    def __init__(self) -> None:
        self.batches: list[dict[str, float]] = []
        self.finished: dict[int, float] = {}  # batch id -> wall clock when it completed
        self._current: dict[str, float] | None = None
        self._checkpoints = 0

    def _add(self, stage: str, seconds: float) -> None:
        if self._current is not None:
            self._current[stage] = self._current.get(stage, 0.0) + seconds

    def _timed(self, fn, namer):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(namer(args), time.perf_counter() - start)

        return wrapper

    def install(self) -> None:
        from streaming import job, pipeline, sinks

        def checkpoint_name(_args) -> str:
            index = self._checkpoints
            self._checkpoints += 1
            return self.CHECKPOINTS[index] if index < len(self.CHECKPOINTS) else "checkpoint"

        pipeline._checkpoint = self._timed(pipeline._checkpoint, checkpoint_name)
        sinks.append_once = self._timed(
            sinks.append_once, lambda a: "append " + Path(str(a[1])).name
        )
        sinks.update_alerts = self._timed(sinks.update_alerts, lambda a: "alerts MERGE")
        pipeline.publish_new_alerts = self._timed(pipeline.publish_new_alerts, lambda a: "publish")
        process = job.process_telemetry_batch

        def batch(job_, frame, batch_id):
            self._current, self._checkpoints = {}, 0
            start = time.perf_counter()
            try:
                process(job_, frame, batch_id)
            finally:
                total = time.perf_counter() - start
                self.finished[batch_id] = time.time()
                # The sinks run side by side, so stages overlap and do not add up to the total.
                stages = self._current or {}
                stages["total"] = total
                self.batches.append(stages)
                self._current = None

        job.process_telemetry_batch = batch

    def summary(self, skip_first: bool = False) -> dict[str, float]:
        """Mean seconds per stage over the recorded micro-batches."""
        batches = self.batches[1:] if skip_first and len(self.batches) > 1 else self.batches
        keys = sorted({k for b in batches for k in b})
        return {k: float(np.mean([b.get(k, 0.0) for b in batches])) for k in keys}


# ---------------------------------------------------------------- 2. backlog


def backlog(spark, cfg: PitstopConfig, clock: StageClock, readings: int) -> dict[str, Any]:
    """Catch up a full topic with availableNow and large micro-batches; readings/s."""
    from streaming import tables
    from streaming.job import start_battery_query
    from streaming.pipeline import build_job

    job = build_job(spark, cfg)
    clock.batches.clear()
    start = time.perf_counter()
    start_battery_query(spark, job, available_now=True).awaitTermination()
    elapsed = time.perf_counter() - start
    stored = spark.read.format("delta").load(job.paths[tables.TELEMETRY]).count()
    forecasts = spark.read.format("delta").load(job.paths[tables.FORECASTS]).count()
    if stored != readings or forecasts != readings:
        log.warning("backlog: %d produced, %d stored, %d forecast", readings, stored, forecasts)
    return {
        "readings": readings,
        "stored": stored,
        "forecasts": forecasts,
        "micro_batches": len(clock.batches),
        "seconds": elapsed,
        "readings_per_s": readings / elapsed,
        "stages_s": clock.summary(),
        "paths": job.paths,
    }


# ---------------------------------------------------------------- 3. scoring patterns


def micro_batches(spark, telemetry_path: str, rows: int, limit: int) -> list[tuple]:
    """Stream-shaped micro-batches of the stored readings: consecutive days holding about
    `rows` readings (the targets), each with the history their windows need. Cached."""
    from pyspark.sql import functions as F

    from streaming import transforms

    telemetry = spark.read.format("delta").load(telemetry_path)
    per_day = telemetry.groupBy("date").count().orderBy("date").toPandas()
    # Skip the first 60 days so every window is full, as in a running fleet.
    per_day = per_day.iloc[60:]
    frames, first, total = [], None, 0
    for day, count in zip(per_day["date"], per_day["count"], strict=True):
        first = first or day
        total += count
        if total < rows:
            continue
        targets = telemetry.where(F.col("date").between(first, day))
        history = transforms.history_for(targets, telemetry, 60)
        frames.append((history.localCheckpoint(eager=True), targets.localCheckpoint(eager=True)))
        first, total = None, 0
        if len(frames) == limit:
            break
    return frames


def scoring_patterns(spark, cfg: PitstopConfig, uri: str, frames: list) -> dict[str, Any]:
    """Time four ways to forecast the same micro-batches (interleaved, rotating order).

    Each starts from the batch's readings and their history: Pitstop builds and scores the
    windows in one Python call (`score_history`, as the stream does); the peers get the
    windows built by Spark (`build_windows`) and score them their way.
    """
    import mlflow

    from models.features import model_input_columns
    from streaming import transforms
    from streaming.scoring import ModelRef, RegistryTarget, optional_inputs, score_history

    name, version = uri.removeprefix("models:/").split("/")
    ref = ModelRef(name=name, version=version, inputs=optional_inputs(uri))
    target = RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri)
    alias_uri = f"models:/{name}@{cfg.mlflow.alias}"
    stock = mlflow.pyfunc.spark_udf(spark, alias_uri, result_type="array<double>")
    lab_model = mlflow.pyfunc.load_model(alias_uri)

    def sink(frame) -> None:
        frame.write.format("noop").mode("overwrite").save()

    def windows(batch):
        history, targets = batch
        return transforms.build_windows(history, targets, 60, 2, list(ref.inputs))

    columns = model_input_columns(windows(frames[0]).limit(1).toPandas())

    loads = spark.sparkContext.accumulator(0)  # model loads in Pitstop's Python workers

    def pitstop(batch) -> None:
        sink(score_history(*batch, 60, [ref], target, loads, partitions=2))

    def spark_udf_once(batch) -> None:
        sink(windows(batch).withColumn("forecast", stock(*columns)))

    def spark_udf_rebuilt(batch) -> None:
        udf = mlflow.pyfunc.spark_udf(spark, alias_uri, result_type="array<double>")
        sink(windows(batch).withColumn("forecast", udf(*columns)))

    def lab(batch) -> None:
        pdf = windows(batch).toPandas()
        pdf["forecast"] = list(np.asarray(lab_model.predict(pdf[columns]), dtype=np.float64))
        sink(spark.createDataFrame(pdf))

    patterns = {
        "pitstop_score_history": pitstop,
        "mlflow_spark_udf": spark_udf_once,
        "spark_udf_rebuilt_per_batch": spark_udf_rebuilt,
        "lab_collect_predict": lab,
    }
    names = list(patterns)
    # Warm-up on the first micro-batch, not timed. Three rounds: the peers' pandas UDF runs
    # beside the window-building Python in one task, so the pool grows to 4 Python workers,
    # and each new one Pitstop draws loads the model once (~1 s). That is start-up cost,
    # reported separately (`cold_model_loads`); the timed batches measure steady state.
    for _ in range(3):
        for fn in patterns.values():
            fn(frames[0])
    latencies: dict[str, list[float]] = {n: [] for n in names}
    cold: list[int] = []  # Pitstop batches that loaded the model in a new Python worker
    rows = 0
    for index, batch in enumerate(frames[1:]):
        rows += batch[1].count()
        shift = index % len(names)
        for name_ in names[shift:] + names[:shift]:
            before = loads.value
            start = time.perf_counter()
            patterns[name_](batch)
            latencies[name_].append(time.perf_counter() - start)
            if loads.value > before:
                cold.append(index)
    results = {}
    for name_, times in latencies.items():
        results[name_] = {
            "rows_per_s": rows / sum(times),
            "p50_s": float(np.percentile(times, 50)),
            "p99_s": float(np.percentile(times, 99)),
            "micro_batches": len(times),
            "latencies_s": [round(t, 3) for t in times],
        }
    results["pitstop_score_history"]["cold_model_loads"] = cold
    ours = results["pitstop_score_history"]
    for name_ in names[1:]:
        results[name_]["pitstop_throughput_ratio"] = (
            ours["rows_per_s"] / results[name_]["rows_per_s"]
        )
        results[name_]["pitstop_p99_ratio"] = ours["p99_s"] / results[name_]["p99_s"]
    return {"rows_per_micro_batch": rows / max(1, len(frames) - 1), "patterns": results}


# ---------------------------------------------------------------- 4. sustained latency


def paced_producer(bootstrap: str, topic: str, lines: list[bytes], rate: float, stop: Any):
    """Produce `lines` at `rate` per second (10 ms ticks) until done or `stop` is set."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    start, sent = time.perf_counter(), 0
    while sent < len(lines) and not stop.is_set():
        due = min(len(lines), int((time.perf_counter() - start) * rate) + 1)
        for line in lines[sent:due]:
            producer.produce(topic, key=_key(line), value=line)
        sent = max(sent, due)
        producer.poll(0)
        time.sleep(0.01)
    producer.flush(30)
    stop.sent = sent


def codegen_compilations(spark) -> int:
    """Janino compilations so far in this JVM (Spark's codegen metrics)."""
    metrics = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics
    return int(metrics.METRIC_COMPILATION_TIME().getCount())


def sustained(
    spark, cfg: PitstopConfig, clock: StageClock, lines: list[bytes], rate: float, seconds: float
) -> dict[str, Any]:
    """Event-to-alert latency with a 1 s trigger: from the reading's Kafka timestamp to the end
    of the micro-batch that stored, scored and alerted on it (every sink committed)."""
    from pyspark.sql import functions as F

    from pitstop.demo import end_offsets
    from streaming import tables
    from streaming.job import start_battery_query
    from streaming.pipeline import build_job
    from streaming.progress import caught_up

    job = build_job(spark, cfg)
    clock.batches.clear()
    compiled_before = codegen_compilations(spark)
    query = start_battery_query(spark, job, available_now=False)
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
    deadline = time.monotonic() + 300
    while not caught_up(checkpoint, target) and time.monotonic() < deadline:
        if query.exception():
            raise RuntimeError(f"live query failed: {query.exception()}")
        time.sleep(0.5)
    drain_s = time.perf_counter() - started - produce_s
    query.stop()
    compiled = codegen_compilations(spark) - compiled_before
    read = lambda name: spark.read.format("delta").load(job.paths[name])  # noqa: E731
    stored = read(tables.TELEMETRY).select(
        "ingest_batch", (F.unix_micros("kafka_timestamp") / 1e6).alias("sent_at")
    )
    latency = np.array(
        [clock.finished[r.ingest_batch] - r.sent_at for r in stored.collect()], dtype=float
    )
    forecasts = read(tables.FORECASTS).count()
    sent = getattr(stop, "sent", len(wanted))
    return {
        "target_rate_per_s": rate,
        "sent": sent,
        "achieved_rate_per_s": sent / produce_s,
        "produce_s": produce_s,
        "drain_after_produce_s": drain_s,
        "stored": int(latency.size),
        "forecasts": forecasts,
        "micro_batches": len(clock.batches),
        "codegen_compilations_per_batch": compiled / max(1, len(clock.batches)),
        "p50_s": float(np.percentile(latency, 50)) if latency.size else None,
        "p99_s": float(np.percentile(latency, 99)) if latency.size else None,
        "max_s": float(latency.max()) if latency.size else None,
        "stages_s": clock.summary(skip_first=True),
    }


# ---------------------------------------------------------------- main


def print_table(results: dict[str, Any]) -> None:
    """The results as a plain-text table."""
    ceiling = results["ceiling"]["forecaster_windows_per_s"]
    network = results["ceiling"]["network_windows_per_s"]
    back = results["backlog"]
    print(f"\nload average: start {results['load_start']}, end {results['load_end']}")
    print(f"{'measure':<44} {'value':>14}")
    print(f"{'raw ceiling, trained model predict (2x1)':<44} {ceiling:>12,.0f}/s")
    print(f"{'raw ceiling, bare network (2x1)':<44} {network:>12,.0f}/s")
    print(f"{'backlog end to end, readings/s':<44} {back['readings_per_s']:>12,.0f}/s")
    print(
        f"{'  % of model ceiling / network ceiling':<44} "
        f"{100 * back['readings_per_s'] / ceiling:>6.1f}% "
        f"{100 * back['readings_per_s'] / network:>5.1f}%"
    )
    print(
        f"{'  readings, micro-batches, seconds':<44} "
        f"{back['readings']:>7} {back['micro_batches']:>3} {back['seconds']:>6.1f}"
    )
    if "warmup_s" in results:
        warm = f"{WARMUP_READINGS:,}-reading warm-up stream: {results['warmup_s']:.1f} s"
        print(f"  (timed after a {warm})")
    for stage, secs in back["stages_s"].items():
        print(f"    {stage:<40} {secs:>10.2f} s/batch")
    pats = results["patterns"]
    print(f"\nscoring patterns, {pats['rows_per_micro_batch']:.0f} rows per micro-batch")
    print(
        f"{'pattern':<30} {'rows/s':>9} {'p50 s':>7} {'p99 s':>7} "
        f"{'thr ratio':>10} {'p99 ratio':>10}"
    )
    for name, r in pats["patterns"].items():
        thr = r.get("pitstop_throughput_ratio")
        p99 = r.get("pitstop_p99_ratio")
        print(
            f"{name:<30} {r['rows_per_s']:>9,.0f} {r['p50_s']:>7.2f} {r['p99_s']:>7.2f} "
            f"{'' if thr is None else f'{thr:.2f}x':>10} {'' if p99 is None else f'{p99:.2f}x':>10}"
        )
    ours = pats["patterns"]["pitstop_score_history"]
    cold = ours.get("cold_model_loads", [])
    if cold:
        times = ours["latencies_s"]
        print(
            f"  Pitstop loaded the model in a new Python worker in batch(es) {cold} "
            f"({', '.join(f'{times[i]:.2f} s' for i in cold)})"
        )
    live = results["sustained"]
    print(
        f"\nsustained {live['achieved_rate_per_s']:.0f} readings/s for {live['produce_s']:.0f} s "
        f"(1 s trigger): {live['forecasts']} forecasts, {live['micro_batches']} micro-batches"
    )
    print(f"  event-to-alert p50 {live['p50_s']:.1f} s, p99 {live['p99_s']:.1f} s (targets 3 / 10)")
    print(f"  codegen compilations per micro-batch: {live['codegen_compilations_per_batch']:.0f}")
    for stage, secs in live["stages_s"].items():
        print(f"    {stage:<40} {secs:>10.2f} s/batch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batteries", type=int, default=200)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="small fleet, short phases")
    parser.add_argument("--micro-batches", type=int, default=21, help="for the pattern phase")
    parser.add_argument("--rate", type=float, default=1000.0, help="sustained readings/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="sustained phase length")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    if args.quick:
        args.batteries, args.days = min(args.batteries, 50), min(args.days, 200)
        args.micro_batches, args.seconds = min(args.micro_batches, 5), min(args.seconds, 20)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    from pitstop.broker import stop_broker

    began = time.perf_counter()
    results: dict[str, Any] = {"args": vars(args), "cores": os.cpu_count()}
    results["load_start"] = [round(x, 2) for x in os.getloadavg()]
    root = Path(tempfile.mkdtemp(prefix="pitstop-stream-bench-"))
    base = load_config("local")
    broker_dir = root / "kafka"
    spark = None
    try:
        handle = start_bench_broker(base, broker_dir)
        bootstrap = handle.bootstrap
        big = 10_000_000
        backlog_cfg = bench_config(root, bootstrap, "backlog", max_offsets_per_trigger=big)
        live_cfg = bench_config(root, bootstrap, "live", trigger_seconds=1.0)
        log.info("training the champion LSTM")
        uri = train_champion(backlog_cfg)
        log.info("raw ceiling of %s", uri)
        results["model_uri"] = uri
        results["ceiling"] = raw_ceiling(
            backlog_cfg.mlflow.tracking_uri, uri, 4.0 if args.quick else 8.0
        )
        lines = simulate_lines(backlog_cfg, root / "sim", args.batteries, args.days)
        log.info("producing %d readings", len(lines))
        produce(bootstrap, backlog_cfg.kafka.topics.telemetry, lines)

        from streaming.session import build_spark_session

        spark = build_spark_session(backlog_cfg, app_name="pitstop-stream-bench")
        clock = StageClock()
        clock.install()
        # A job catching up has its JVM, Python workers and model warm after its first
        # micro-batch: warm up on a stream of its own (own topic and tables) first, so the
        # timed backlog is throughput, not start-up.
        log.info("warm-up stream (%d readings)", WARMUP_READINGS)
        warm_cfg = bench_config(root, bootstrap, "warmup", max_offsets_per_trigger=big)
        produce(bootstrap, warm_cfg.kafka.topics.telemetry, lines[:WARMUP_READINGS])
        results["warmup_s"] = backlog(spark, warm_cfg, clock, WARMUP_READINGS)["seconds"]
        log.info("backlog phase")
        results["backlog"] = backlog(spark, backlog_cfg, clock, len(lines))
        log.info("pattern phase")
        from streaming import tables

        frames = micro_batches(
            spark, results["backlog"]["paths"][tables.TELEMETRY], 2000, args.micro_batches
        )
        results["patterns"] = scoring_patterns(spark, backlog_cfg, uri, frames)
        log.info("sustained phase")
        results["sustained"] = sustained(spark, live_cfg, clock, lines, args.rate, args.seconds)
    finally:
        if spark is not None:
            spark.stop()
        stop_broker(base, data_dir=broker_dir)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["load_end"] = [round(x, 2) for x in os.getloadavg()]
    results["run_seconds"] = time.perf_counter() - began
    results["backlog"].pop("paths", None)
    print_table(results)
    print(f"\nrun time {results['run_seconds']:.0f} s")
    out = ROOT / ".pitstop" / "bench" / "stream.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
