"""Pitstop's streaming job against its raw ceiling and against peers' scoring patterns.

One run, everything temporary (MLflow store with a freshly trained champion LSTM, a broker
on free ports, Delta tables), five measurements:
  1. raw ceiling: windows/s of the same registered model in 2 single-threaded processes;
  2. backlog: broker -> parse -> state -> LSTM -> Delta -> alerts, readings/s, after a
     separate warm-up stream (a job catching up is warm after its first micro-batch);
  3. scoring patterns on the same ~2,000-reading micro-batches (consecutive days): Pitstop's
     scoring step on the windows its state step emits, against MLflow's `spark_udf` built
     once, `spark_udf` rebuilt every micro-batch and the lab's collect -> predict ->
     createDataFrame, each on the same windows as arrays;
  4. event-to-alert latency (batch committed - Kafka timestamp) with a 1 s trigger at a
     sustained --rate (1,000 readings/s) for --seconds, with Spark jobs per micro-batch;
  5. --steps: the same at higher rates, each for --seconds: the highest rate held with
     p99 <= 10 s.
Run: python benchmarks/stream_benchmark.py [--quick] [--seconds 300] [--steps 2000,3000,4000]
     [--no-metrics] [--monitor]   (metrics' cost: with and without; the monitor beside the job)
Writes .pitstop/bench/stream.json. State at scale and TTL: benchmarks/state_scale.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from streamkit import (  # noqa: E402
    StageClock,
    bench_config,
    free_port,
    print_monitor,
    print_stages,
    produce,
    simulate_lines,
    start_bench_broker,
    sustained,
    train_champion,
)

from core.config import PitstopConfig, load_config  # noqa: E402

log = logging.getLogger("pitstop.bench")
# Readings a separate warm-up stream processes before the backlog is timed.
WARMUP_READINGS = 5_000
LATENCY_P99_TARGET_S = 10.0


# ---------------------------------------------------------------- 1. raw ceiling


def _ceiling_worker(spec: dict, ready: Any, results: Any) -> None:
    import mlflow
    import pandas as pd

    from models.forecasting.pyfunc import load_forecaster

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
    model through `Forecaster.predict` (encoding included, as the job runs it, frames of
    1,000 rows scored in the model's own chunks); the bare network of the same architecture
    is measured with lstm_ceiling's own `measure`.
    """
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
    from models.forecasting.lstm import PREDICT_CHUNK

    # The bare network in the chunks the forecaster scores in (its fastest batch size here).
    network = measure("network", 2, 1, PREDICT_CHUNK, 60, seconds)
    return {"forecaster_windows_per_s": sum(rates), "network_windows_per_s": network}


# ---------------------------------------------------------------- 2. backlog


def backlog(spark, cfg: PitstopConfig, clock: StageClock, readings: int) -> dict[str, Any]:
    """Catch up a full topic with availableNow and large micro-batches; readings/s."""
    from streaming import tables
    from streaming.battery.flow import build_job, start_battery_query
    from streaming.metrics import start_metrics

    job = build_job(spark, cfg, metrics=start_metrics(spark, cfg))
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


def micro_batches(spark, telemetry_path: str, rows: int, limit: int, inputs) -> list[tuple]:
    """Stream-shaped micro-batches from the stored readings: consecutive days holding about
    `rows` new readings each (after the first 60 days, so windows are full), as the state
    step emits them (packed windows) and as model input arrays (for the peers). Cached."""
    from pyspark.sql import functions as F

    from streaming.battery.history import HistoryRules
    from streaming.battery.readings import battery_history, parse_telemetry
    from streaming.files import messages_from_rows

    telemetry = spark.read.format("delta").load(telemetry_path)
    decided = battery_history(
        parse_telemetry(messages_from_rows(telemetry, "bench")), HistoryRules(60, 14), 90
    ).localCheckpoint(eager=True)
    per_day = telemetry.groupBy("date").count().orderBy("date").toPandas().iloc[60:]
    frames, first, total = [], None, 0
    for day, count in zip(per_day["date"], per_day["count"], strict=True):
        first = first or day
        total += count
        if total < rows:
            continue
        batch = decided.where(F.col("date").between(first, day)).localCheckpoint(eager=True)
        frames.append((batch, model_input_arrays(batch, inputs).localCheckpoint(eager=True)))
        first, total = None, 0
        if len(frames) == limit:
            break
    return frames


def model_input_arrays(decided, inputs):
    """The state step's new readings as the forecast contract's columns (arrays)."""
    import pyarrow as pa
    from pyspark.sql import types as T

    from models.forecasting.features import HISTORY_COLUMN, STATIC_COLUMNS
    from streaming.battery.scoring import model_input

    schema = T.StructType(
        [
            T.StructField("battery_id", T.StringType()),
            T.StructField("date", T.DateType()),
            T.StructField(HISTORY_COLUMN, T.ArrayType(T.DoubleType())),
            *[T.StructField(c, T.DoubleType()) for c in STATIC_COLUMNS],
            *[T.StructField(c, T.ArrayType(T.DoubleType())) for c in inputs],
        ]
    )

    def decode(batches):
        for batch in batches:
            frame = model_input(batch, list(inputs))[schema.fieldNames()]
            for column in (HISTORY_COLUMN, *inputs):
                frame[column] = [a.tolist() for a in frame[column]]
            yield pa.RecordBatch.from_pandas(frame, preserve_index=False)

    return decided.where("fate = 'new'").mapInArrow(decode, schema)


def scoring_patterns(spark, cfg: PitstopConfig, uri: str, frames: list, ref) -> dict[str, Any]:
    """Time four ways to forecast the same micro-batches (interleaved, rotating order)."""
    import mlflow

    from streaming.battery.scoring import score_readings
    from streaming.model_refs import RegistryTarget

    target = RegistryTarget(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri)
    name = uri.removeprefix("models:/").split("/")[0]
    alias_uri = f"models:/{name}@{cfg.mlflow.alias}"
    stock = mlflow.pyfunc.spark_udf(spark, alias_uri, result_type="array<double>")
    lab_model = mlflow.pyfunc.load_model(alias_uri)
    columns = [c for c in frames[0][1].columns if c not in ("battery_id", "date")]

    def sink(frame) -> None:
        frame.write.format("noop").mode("overwrite").save()

    loads = spark.sparkContext.accumulator(0)  # model loads in Pitstop's Python workers

    def pitstop(batch) -> None:
        sink(score_readings(batch[0], [ref], target, loads))

    def spark_udf_once(batch) -> None:
        sink(batch[1].withColumn("forecast", stock(*columns)))

    def spark_udf_rebuilt(batch) -> None:
        udf = mlflow.pyfunc.spark_udf(spark, alias_uri, result_type="array<double>")
        sink(batch[1].withColumn("forecast", udf(*columns)))

    def lab(batch) -> None:
        pdf = batch[1].toPandas()
        pdf["forecast"] = list(np.asarray(lab_model.predict(pdf[columns]), dtype=np.float64))
        sink(spark.createDataFrame(pdf))

    patterns = {
        "pitstop_scoring_step": pitstop,
        "mlflow_spark_udf": spark_udf_once,
        "spark_udf_rebuilt_per_batch": spark_udf_rebuilt,
        "lab_collect_predict": lab,
    }
    names = list(patterns)
    # Warm-up rounds on the first micro-batch, not timed: each new Python worker Pitstop
    # draws loads the model once (~1 s), start-up cost reported as `cold_model_loads`.
    for _ in range(3):
        for fn in patterns.values():
            fn(frames[0])
    latencies: dict[str, list[float]] = {n: [] for n in names}
    cold: list[int] = []
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
    ours = results["pitstop_scoring_step"]
    ours["cold_model_loads"] = cold
    for name_ in names[1:]:
        results[name_]["pitstop_throughput_ratio"] = (
            ours["rows_per_s"] / results[name_]["rows_per_s"]
        )
        results[name_]["pitstop_p99_ratio"] = ours["p99_s"] / results[name_]["p99_s"]
    return {"rows_per_micro_batch": rows / max(1, len(frames) - 1), "patterns": results}


# ---------------------------------------------------------------- report


def print_table(results: dict[str, Any]) -> None:
    """The results as a plain-text table."""
    ceiling = results["ceiling"]["forecaster_windows_per_s"]
    network = results["ceiling"]["network_windows_per_s"]
    back = results["backlog"]
    print(f"\nload average: start {results['load_start']}, end {results['load_end']}")
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
    print(f"  (timed after a {WARMUP_READINGS:,}-reading warm-up: {results['warmup_s']:.1f} s)")
    print_stages(back["stages_s"])
    pats = results["patterns"]
    print(f"\nscoring patterns, {pats['rows_per_micro_batch']:.0f} rows per micro-batch")
    header = ("pattern", "rows/s", "p50 s", "p99 s", "thr ratio", "p99 ratio")
    print(f"{header[0]:<30} {header[1]:>9} {header[2]:>7} {header[3]:>7} ", end="")
    print(f"{header[4]:>10} {header[5]:>10}")
    for name, r in pats["patterns"].items():
        thr, p99 = r.get("pitstop_throughput_ratio"), r.get("pitstop_p99_ratio")
        print(
            f"{name:<30} {r['rows_per_s']:>9,.0f} {r['p50_s']:>7.2f} {r['p99_s']:>7.2f} "
            f"{'' if thr is None else f'{thr:.2f}x':>10} {'' if p99 is None else f'{p99:.2f}x':>10}"
        )
    for live in [results["sustained"], *results.get("steps", [])]:
        rate, seconds = live["achieved_rate_per_s"], live["produce_s"]
        print(
            f"\nsustained {rate:.0f} readings/s for {seconds:.0f} s (1 s trigger): "
            f"{live['stored']} stored, {live['micro_batches']} micro-batches "
            f"(p50 {live['micro_batch_p50_s']:.2f} s)"
        )
        print(
            f"  event-to-alert p50 {live['p50_s']:.2f} s, p99 {live['p99_s']:.2f} s, "
            f"max {live['max_s']:.1f} s"
        )
        print(
            f"  codegen compilations per micro-batch: {live['codegen_compilations_per_batch']:.1f}"
        )
        print(f"  metrics endpoint: {'on' if live.get('metrics_on') else 'off'}")
        print_monitor(live.get("monitor"))
        print_stages(live["stages_s"])
    if "highest_rate_held" in results:
        held = results["highest_rate_held"]
        print(f"\nhighest rate held with p99 <= {LATENCY_P99_TARGET_S:g} s: {held}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batteries", type=int, default=200)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="small fleet, short phases")
    parser.add_argument("--micro-batches", type=int, default=21, help="for the pattern phase")
    parser.add_argument("--rate", type=float, default=1000.0, help="sustained readings/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="each sustained phase")
    parser.add_argument("--steps", default="", help="higher rates to hold, e.g. 2000,3000,4000")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve the job's Prometheus metrics (on by default, as in the job)",
    )
    parser.add_argument(
        "--monitor", action="store_true", help="run the accuracy monitor beside the stream"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batteries, args.days = min(args.batteries, 50), min(args.days, 200)
        args.micro_batches, args.seconds = min(args.micro_batches, 5), min(args.seconds, 20)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    from broker.process import stop_broker

    steps = [float(s) for s in args.steps.split(",") if s.strip()]
    began = time.perf_counter()
    results: dict[str, Any] = {"args": vars(args), "cores": os.cpu_count()}
    results["load_start"] = [round(x, 2) for x in os.getloadavg()]
    root = Path(tempfile.mkdtemp(prefix="pitstop-stream-bench-"))
    base = load_config("local")
    broker_dir = root / "kafka"
    topics = {"bench-telemetry": 4, "bench-warmup": 4, "bench-alerts": 1, "bench-notes": 1}
    topics.update({f"bench-live-{int(r)}": 4 for r in [args.rate, *steps]})
    spark = None
    try:
        bootstrap = start_bench_broker(base, broker_dir, topics).bootstrap
        big = 10_000_000
        # One metrics endpoint for the whole run (0: off, the "before" of the metrics' cost).
        metrics_port = free_port() if args.metrics else 0
        results["metrics_port"] = metrics_port
        backlog_cfg = bench_config(
            root,
            bootstrap,
            "backlog",
            "bench-telemetry",
            max_offsets_per_trigger=big,
            metrics_port=metrics_port,
        )
        log.info("training the champion LSTM")
        uri = train_champion(backlog_cfg)
        results["model_uri"] = uri
        results["ceiling"] = raw_ceiling(
            backlog_cfg.mlflow.tracking_uri, uri, 4.0 if args.quick else 8.0
        )
        lines = simulate_lines(backlog_cfg, root / "sim", args.batteries, args.days)
        # The sustained phases need rate x seconds readings of the same fleet: a longer run.
        needed = int(max([args.rate, *steps]) * args.seconds)
        live_days = max(args.days, -(-needed // args.batteries) + 30)
        live_lines = (
            simulate_lines(backlog_cfg, root / "sim-live", args.batteries, live_days)
            if live_days > args.days
            else lines
        )
        log.info("producing %d readings", len(lines))
        produce(bootstrap, backlog_cfg.kafka.topics.telemetry, lines)

        from streaming.session import build_spark_session

        spark = build_spark_session(backlog_cfg, app_name="pitstop-stream-bench")
        clock = StageClock()
        clock.install()
        log.info("warm-up stream (%d readings)", WARMUP_READINGS)
        warm_cfg = bench_config(
            root,
            bootstrap,
            "warmup",
            "bench-warmup",
            max_offsets_per_trigger=big,
            metrics_port=metrics_port,
        )
        produce(bootstrap, warm_cfg.kafka.topics.telemetry, lines[:WARMUP_READINGS])
        results["warmup_s"] = backlog(spark, warm_cfg, clock, WARMUP_READINGS)["seconds"]
        log.info("backlog phase")
        results["backlog"] = backlog(spark, backlog_cfg, clock, len(lines))

        log.info("pattern phase")
        from streaming import tables
        from streaming.model_refs import ModelRef, optional_inputs

        name, version = uri.removeprefix("models:/").split("/")
        ref = ModelRef(name=name, version=version, inputs=optional_inputs(uri))
        frames = micro_batches(
            spark,
            results["backlog"]["paths"][tables.TELEMETRY],
            2000,
            args.micro_batches,
            ref.inputs,
        )
        results["patterns"] = scoring_patterns(spark, backlog_cfg, uri, frames, ref)
        for rate in [args.rate, *steps]:
            log.info("sustained phase at %.0f readings/s", rate)
            live_cfg = bench_config(
                root,
                bootstrap,
                f"live-{int(rate)}",
                f"bench-live-{int(rate)}",
                trigger_seconds=1.0,
                metrics_port=metrics_port,
            )
            live_cfg = live_cfg.model_copy(
                update={"monitor": live_cfg.monitor.model_copy(update={"trigger_seconds": 5.0})}
            )
            phase = sustained(
                spark, live_cfg, clock, live_lines, rate, args.seconds, monitor=args.monitor
            )
            if rate == args.rate:
                results["sustained"] = phase
            else:
                results.setdefault("steps", []).append(phase)
        held = [
            p["target_rate_per_s"]
            for p in [results["sustained"], *results.get("steps", [])]
            if p["p99_s"] is not None
            and p["p99_s"] <= LATENCY_P99_TARGET_S
            and p["achieved_rate_per_s"] >= 0.95 * p["target_rate_per_s"]
        ]
        if steps:
            results["highest_rate_held"] = max(held) if held else None
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
