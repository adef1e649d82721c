"""Simulator throughput and memory: events/s to files and to a local Kafka broker, and peak
RSS of a 100k-battery year against a 1k-battery year (each in its own process).

    python benchmarks/simulator_throughput.py            # all three
    python benchmarks/simulator_throughput.py --only files --batteries 20000 --days 30

Targets (issue 3): >= 100k events/s to files, >= 50k events/s to the local broker, and
peak RSS of 100k x 365 within 1.5x of 1k x 365.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from core.config import load_config
from simulator.run import run_simulation


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_files(batteries: int, days: int) -> dict:
    """Events/s of a run into the files sink (JSONL + lab CSV + truth)."""
    cfg = load_config("local")
    out = Path(tempfile.mkdtemp(prefix="sim-bench-files-"))
    try:
        summary = run_simulation(
            cfg, sink="files", batteries=batteries, days=days, output_dir=out, notes=False
        )
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "sink": "files",
        "events": summary.events_sent,
        "seconds": round(summary.elapsed_s, 2),
        "events_per_s": round(summary.rate),
        "output_mb": round(size_mb),
    }


def bench_kafka(batteries: int, days: int) -> dict:
    """Events/s of a run into a fresh local broker (delivery acknowledged, flush included)."""
    from broker.process import start_broker, stop_broker

    cfg = load_config("local")
    data_dir = Path(tempfile.mkdtemp(prefix="sim-bench-kafka-"))
    topics = {cfg.kafka.topics.telemetry: 4, cfg.kafka.topics.notes: 2}
    handle = start_broker(
        cfg, data_dir=data_dir, port=_free_port(), controller_port=_free_port(), topics=topics
    )
    try:
        kafka = cfg.kafka.model_copy(update={"bootstrap_servers": handle.bootstrap})
        summary = run_simulation(
            cfg.model_copy(update={"kafka": kafka}),
            sink="kafka",
            batteries=batteries,
            days=days,
            output_dir=data_dir / "sim",
            notes=False,
        )
    finally:
        stop_broker(cfg, data_dir=data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "sink": "kafka",
        "events": summary.events_sent,
        "delivered": summary.delivered,
        "seconds": round(summary.elapsed_s, 2),
        "events_per_s": round(summary.rate),
    }


def _child_rss(batteries: int, days: int, sink: str) -> None:
    cfg = load_config("local")
    out = Path(tempfile.mkdtemp(prefix="sim-bench-rss-"))
    try:
        summary = run_simulation(
            cfg, sink=sink, batteries=batteries, days=days, output_dir=out, notes=False
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "batteries": batteries,
        "days": days,
        "events": summary.events_sent,
        "seconds": round(summary.elapsed_s, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }
    sys.stdout.write(json.dumps(result) + "\n")


def bench_rss(small: int, large: int, days: int, sink: str) -> dict:
    """Peak RSS of `large` vs `small` batteries over `days`, each in a fresh process."""
    runs = []
    for batteries in (small, large):
        command = [sys.executable, __file__, "--child-rss", str(batteries), str(days), sink]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "sink": sink,
        "runs": runs,
        "ratio": round(runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["files", "kafka", "rss"], action="append")
    parser.add_argument("--batteries", type=int, default=20000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rss-days", type=int, default=365)
    parser.add_argument("--rss-sink", default="null", choices=["null", "files"])
    parser.add_argument("--child-rss", nargs=3, metavar=("BATTERIES", "DAYS", "SINK"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child_rss:
        _child_rss(int(args.child_rss[0]), int(args.child_rss[1]), args.child_rss[2])
        return
    selected = args.only or ["files", "kafka", "rss"]
    results = {}
    if "files" in selected:
        results["files"] = bench_files(args.batteries, args.days)
        print(json.dumps(results["files"]), flush=True)
    if "kafka" in selected:
        results["kafka"] = bench_kafka(args.batteries, args.days)
        print(json.dumps(results["kafka"]), flush=True)
    if "rss" in selected:
        results["rss"] = bench_rss(1000, 100_000, args.rss_days, args.rss_sink)
        print(json.dumps(results["rss"]), flush=True)


if __name__ == "__main__":
    main()
