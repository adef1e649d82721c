"""The battery state at fleet scale: many batteries in state, the same feed rate, and TTL.

1. reference: the stream at --rate readings/s (1 s trigger) over a simulated 200-battery
   fleet, as in stream_benchmark.py;
2. scale: `telemetry` pre-filled with --batteries (100,000) x --days (90) readings, so the
   job's new checkpoint seeds that many batteries into state; then the same rate of
   readings from all of them. Micro-batch time against the reference, the seeding batch's
   time, state size on disk and the RSS of the JVM and its Python workers;
3. TTL: --ttl-batteries report for a while, then only a tenth of them; the state's key
   count (Spark's state data source) falls back once `stream.state_ttl_days` has passed.

Run: python benchmarks/state_scale.py [--batteries 100000 --days 90 --seconds 300]
Writes .pitstop/bench/state_scale.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
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
    paced_producer,
    simulate_lines,
    start_bench_broker,
    sustained,
    train_champion,
)

log = logging.getLogger("pitstop.bench")
START = dt.date(2024, 1, 1)


def prefill_telemetry(spark, path: str, batteries: int, days: int) -> int:
    """`batteries` x `days` readings straight into `telemetry` (as if a stream stored them)."""
    from pyspark.sql import functions as F

    from streaming.tables import TELEMETRY_SCHEMA

    ids = F.col("id") % batteries
    day = (F.col("id") / batteries).cast("int")
    values = {
        "schema_version": F.lit(1),
        "car_id": F.format_string("C%06d", ids),
        "battery_id": F.format_string("B%06d", ids),
        "date": F.date_add(F.lit(START.isoformat()).cast("date"), day),
        "battery_age_days": day + 100,
        "number_of_trips": F.lit(2),
        "daily_trip_duration": F.lit(1.0),
        "daily_cycles_used": F.rand(1) * 2,
        "lifetime_cycles_used": day * 1.0 + 50,
        "battery_rated_cycles": F.lit(2000.0),
        "topic": F.lit("prefill"),
        "partition": F.lit(0),
        "offset": F.col("id"),
        "kafka_timestamp": F.current_timestamp(),
        "ingested_at": F.current_timestamp(),
        "ingest_batch": F.lit(-1),
    }
    rows = spark.range(batteries * days).select(
        *[
            values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name)
            for f in TELEMETRY_SCHEMA.fields
        ]
    )
    rows.write.format("delta").mode("append").save(path)
    return batteries * days


def fleet_lines(batteries: int, first_day: int, count: int) -> list[bytes]:
    """Readings of every battery, day after day from `first_day`, `count` of them."""
    lines = []
    for index in range(count):
        battery, day = index % batteries, first_day + index // batteries
        lines.append(
            json.dumps(
                {
                    "schema_version": 1,
                    "car_id": f"C{battery:06d}",
                    "battery_id": f"B{battery:06d}",
                    "date": (START + dt.timedelta(days=day)).isoformat(),
                    "battery_age_days": day + 100,
                    "number_of_trips": 2,
                    "daily_trip_duration": 1.0,
                    "daily_cycles_used": 1.0,
                    "lifetime_cycles_used": day + 50.0,
                    "battery_rated_cycles": 2000.0,
                }
            ).encode()
        )
    return lines


def state_on_disk(checkpoint: str) -> int:
    """Bytes under the checkpoint's state folder."""
    return sum(p.stat().st_size for p in Path(checkpoint, "state").rglob("*") if p.is_file())


def process_tree_rss() -> dict[str, float]:
    """RSS (GB) of this process's JVM and of the Python workers it forked."""
    import psutil

    jvm = workers = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            name, rss = " ".join(child.cmdline()), child.memory_info().rss / 1e9
        except psutil.Error:
            continue
        if "java" in name:
            jvm += rss
        elif "pyspark" in name or "daemon" in name or "worker" in name:
            workers += rss
    return {"jvm_gb": round(jvm, 2), "python_workers_gb": round(workers, 2)}


def state_keys(spark, checkpoint: str) -> int:
    """Batteries in the committed state (Spark's state data source)."""
    return (
        spark.read.format("statestore").option("stateVarName", "history").load(checkpoint).count()
    )


def scale_phase(spark, cfg, clock, args) -> dict[str, Any]:
    """Seed `telemetry` with a big fleet, then feed the same rate from all of it."""
    from streaming import tables
    from streaming.battery.flow import build_job, start_battery_query

    job = build_job(spark, cfg)
    started = time.perf_counter()
    prefilled = prefill_telemetry(spark, job.paths[tables.TELEMETRY], args.batteries, args.days)
    prefill_s = time.perf_counter() - started
    lines = fleet_lines(args.batteries, args.days, int(args.rate * args.seconds))
    clock.batches.clear()
    query = start_battery_query(spark, job)
    stop = threading.Event()
    feed = threading.Thread(
        target=paced_producer,
        args=(cfg.kafka.bootstrap_servers, cfg.kafka.topics.telemetry, lines, args.rate, stop),
    )
    feed.start()
    feed.join(args.seconds * 3)
    stop.set()
    feed.join()
    time.sleep(10)  # let the last micro-batches finish
    rss = process_tree_rss()
    query.stop()
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)
    steady = [b["total"] for b in clock.batches[1:]]
    return {
        "batteries": args.batteries,
        "days": args.days,
        "prefilled_readings": prefilled,
        "prefill_s": prefill_s,
        "seed_batch_s": clock.batches[0]["total"] if clock.batches else None,
        "micro_batches": len(clock.batches),
        "micro_batch_p50_s": float(np.median(steady)) if steady else None,
        "micro_batch_mean_s": float(np.mean(steady)) if steady else None,
        "stages_s": clock.summary(skip_first=True),
        "state_keys": state_keys(spark, checkpoint),
        "state_bytes_on_disk": state_on_disk(checkpoint),
        **rss,
    }


def ttl_phase(spark, cfg, clock, batteries: int, ttl_s: float) -> dict[str, Any]:
    """All `batteries` report, then a tenth: the state's key count over time."""
    from streaming.battery.flow import build_job, start_battery_query

    job = build_job(spark, cfg)
    query = start_battery_query(spark, job)
    checkpoint = cfg.storage.checkpoint(cfg.stream.query_name)
    everyone = fleet_lines(batteries, 0, batteries * 3)
    few = [line for line in fleet_lines(batteries, 3, batteries * 30) if b'"B0000' in line]
    counts, started = [], time.perf_counter()

    def feed(lines, rate, seconds):
        stop = threading.Event()
        timer = threading.Timer(seconds, stop.set)
        timer.start()
        paced_producer(cfg.kafka.bootstrap_servers, cfg.kafka.topics.telemetry, lines, rate, stop)
        timer.cancel()

    feed(everyone, len(everyone) / 20, 25)
    for _ in range(int(ttl_s * 3 / 10)):
        feed(few, 20, 10)
        counts.append((round(time.perf_counter() - started), state_keys(spark, checkpoint)))
        log.info("TTL phase: %s", counts[-1])
    query.stop()
    return {"batteries": batteries, "ttl_s": ttl_s, "state_keys_over_time": counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batteries", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--ttl-batteries", type=int, default=1_000)
    parser.add_argument("--ttl-seconds", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    from broker.process import stop_broker
    from core.config import load_config
    from streaming.session import build_spark_session

    results: dict[str, Any] = {"args": vars(args), "load_start": os.getloadavg()}
    root = Path(tempfile.mkdtemp(prefix="pitstop-state-scale-"))
    base = load_config("local")
    topics = {"ref": 4, "scale": 4, "ttl": 4, "bench-alerts": 1, "bench-notes": 1}
    spark = None
    try:
        bootstrap = start_bench_broker(base, root / "kafka", topics).bootstrap
        live = {"trigger_seconds": 1.0, "max_offsets_per_trigger": 200_000}
        ref_cfg = bench_config(root, bootstrap, "ref", "ref", **live)
        scale_cfg = bench_config(root, bootstrap, "scale", "scale", **live)
        ttl_cfg = bench_config(
            root, bootstrap, "ttl", "ttl", **live, state_ttl_days=args.ttl_seconds / 86_400
        )
        log.info("training the champion LSTM")
        train_champion(ref_cfg)
        spark = build_spark_session(ref_cfg, app_name="pitstop-state-scale")
        clock = StageClock()
        clock.install()
        days = int(args.rate * args.seconds / 200) + 30
        log.info("reference: 200 batteries at %.0f readings/s", args.rate)
        ref_lines = simulate_lines(ref_cfg, root / "sim", 200, days)
        results["reference"] = sustained(spark, ref_cfg, clock, ref_lines, args.rate, args.seconds)
        log.info("scale: %d batteries x %d days in state", args.batteries, args.days)
        results["scale"] = scale_phase(spark, scale_cfg, clock, args)
        ref_batch = results["reference"]["micro_batch_p50_s"]
        results["scale"]["vs_reference"] = results["scale"]["micro_batch_p50_s"] / ref_batch
        log.info("TTL: %d batteries, TTL %.0f s", args.ttl_batteries, args.ttl_seconds)
        results["ttl"] = ttl_phase(spark, ttl_cfg, clock, args.ttl_batteries, args.ttl_seconds)
    finally:
        if spark is not None:
            spark.stop()
        stop_broker(base, data_dir=root / "kafka")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results["load_end"] = os.getloadavg()
    ref, scale = results["reference"], results["scale"]
    print(f"\nload {results['load_start']} -> {results['load_end']}")
    print(
        f"reference, 200 batteries at {ref['achieved_rate_per_s']:.0f}/s: micro-batch p50 "
        f"{ref['micro_batch_p50_s']:.2f} s, event-to-alert p50 {ref['p50_s']:.2f} s / p99 "
        f"{ref['p99_s']:.2f} s"
    )
    print(
        f"scale, {scale['batteries']:,} batteries x {scale['days']} days: seeded in "
        f"{scale['seed_batch_s']:.1f} s; micro-batch p50 {scale['micro_batch_p50_s']:.2f} s "
        f"({100 * (scale['vs_reference'] - 1):+.0f}% vs reference)"
    )
    print(
        f"  state: {scale['state_keys']:,} batteries, {scale['state_bytes_on_disk'] / 1e6:.0f} MB "
        f"on disk; RSS JVM {scale['jvm_gb']} GB, Python workers {scale['python_workers_gb']} GB"
    )
    over_time = results["ttl"]["state_keys_over_time"]
    print(f"TTL {args.ttl_seconds:.0f} s, state keys (seconds, batteries): {over_time}")
    out = ROOT / ".pitstop" / "bench" / "state_scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
