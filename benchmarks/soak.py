"""Memory soak: the real streaming job (spark-submit) fed at a steady rate for 30 minutes.

Samples the RSS of the driver JVM, the Python driver and the Python workers every few
seconds and reports how much each grew after warm-up (issue target: <= 10%), beside the
micro-batch times the job logged and whether it kept up with the feed.
Run: python benchmarks/soak.py [--minutes 30] [--rate 300] [--batteries 300]
Writes .pitstop/bench/soak.json and soak.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import subprocess
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
    bench_config,
    paced_producer,
    simulate_lines,
    start_bench_broker,
    train_champion,
)

from core.config import PitstopConfig, load_config  # noqa: E402

log = logging.getLogger("pitstop.soak")
GROUPS = ("driver JVM", "python driver", "python workers")
BATCH_LINE = re.compile(r"batch (\d+): (\d+) messages, (\d+) new readings.*, ([\d.]+)s$")


def job_environment(cfg: PitstopConfig) -> dict[str, str]:
    """The job subprocess sees `cfg` through Pitstop's environment overrides."""
    from streaming.submit import config_environment

    env = config_environment(cfg)
    env["PITSTOP__STREAM__SCORE_NOTES"] = "false"
    env["PITSTOP__STREAM__QUERY_NAME"] = cfg.stream.query_name
    return env


def classify(process) -> str | None:
    """Which of GROUPS a process of the job's tree is."""
    try:
        argv = process.cmdline()
    except Exception:  # it exited meanwhile
        return None
    if not argv:
        return None
    if Path(argv[0]).name == "java":
        return "driver JVM"
    command = " ".join(argv)
    if "pyspark.daemon" in command or "pyspark.worker" in command:
        return "python workers"
    if "job.py" in command:
        return "python driver"
    return None


def sample(root_pid: int) -> dict[str, float]:
    """RSS in MiB per group over the job's process tree (workers summed)."""
    import psutil

    totals = dict.fromkeys(GROUPS, 0.0)
    try:
        tree = [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return totals
    for process in tree:
        group = classify(process)
        if group is None:
            continue
        try:
            totals[group] += process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return totals


def growth(times: np.ndarray, values: np.ndarray, warmup_s: float, span_s: float) -> dict:
    """Median RSS just after warm-up against the median of the last `span_s`."""
    after = values[(times >= warmup_s) & (times < warmup_s + span_s)]
    last = values[times >= times[-1] - span_s]
    if not len(after) or not len(last):
        return {"after_warmup_mb": None, "end_mb": None, "growth_pct": None}
    base, end = float(np.median(after)), float(np.median(last))
    return {
        "after_warmup_mb": round(base, 1),
        "end_mb": round(end, 1),
        "peak_mb": round(float(values.max()), 1),
        "growth_pct": round(100 * (end / base - 1), 1) if base else None,
    }


def plot(path: Path, times: np.ndarray, series: dict[str, np.ndarray], warmup_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, values in series.items():
        ax.plot(times / 60, values, label=name)
    ax.axvline(warmup_s / 60, color="grey", linestyle="--", label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("Streaming job memory under a steady feed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes before the baseline")
    parser.add_argument("--rate", type=float, default=300.0, help="readings/s fed")
    parser.add_argument("--batteries", type=int, default=300)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from broker.process import stop_broker
    from streaming.submit import spark_submit_command

    root = Path(tempfile.mkdtemp(prefix="pitstop-soak-"))
    base = load_config("local")
    broker_dir = root / "kafka"
    results: dict[str, Any] = {"args": vars(args), "cores": os.cpu_count()}
    results["load_start"] = [round(x, 2) for x in os.getloadavg()]
    job = None
    try:
        topics = {"soak-telemetry": 4, "bench-notes": 1, "bench-alerts": 1}
        handle = start_bench_broker(base, broker_dir, topics)
        cfg = bench_config(root, handle.bootstrap, "live", "soak-telemetry", trigger_seconds=1.0)
        log.info("training the champion LSTM")
        results["model_uri"] = train_champion(cfg)
        wanted = int(args.rate * args.minutes * 60) + 1
        days = math.ceil(wanted / args.batteries) + 1
        lines = simulate_lines(cfg, root / "sim", args.batteries, days)[:wanted]
        log.info("%d readings ready; starting the job", len(lines))
        job_log = root / "job.log"
        job = subprocess.Popen(
            spark_submit_command(cfg),
            env=job_environment(cfg),
            stdout=job_log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stop = threading.Event()
        producer = threading.Thread(
            target=paced_producer,
            args=(cfg.kafka.bootstrap_servers, cfg.kafka.topics.telemetry, lines, args.rate, stop),
            daemon=True,
        )
        started = time.monotonic()
        producer.start()
        samples: list[tuple[float, dict[str, float]]] = []
        while time.monotonic() - started < args.minutes * 60:
            if job.poll() is not None:
                raise RuntimeError(f"the job exited with {job.returncode}; see {job_log}")
            samples.append((time.monotonic() - started, sample(job.pid)))
            time.sleep(args.every)
        stop.set()
        producer.join(30)
        batches = [
            (int(m[1]), int(m[2]), int(m[3]), float(m[4]))
            for m in map(BATCH_LINE.search, job_log.read_text(errors="replace").splitlines())
            if m
        ]
    finally:
        if job is not None and job.poll() is None:
            os.killpg(job.pid, 15)
            try:
                job.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(job.pid, 9)
        stop_broker(base, data_dir=broker_dir)
    times = np.array([t for t, _ in samples])
    series = {g: np.array([s[g] for _, s in samples]) for g in GROUPS}
    series["total"] = sum(series.values())
    warmup_s = args.warmup * 60
    results["rss"] = {g: growth(times, v, warmup_s, 120.0) for g, v in series.items()}
    seconds = np.array([b[3] for b in batches])
    results["micro_batches"] = {
        "count": len(batches),
        "readings_stored": int(sum(b[2] for b in batches)),
        "readings_fed": getattr(stop, "sent", len(lines)),
        "seconds_p50": float(np.median(seconds)) if len(seconds) else None,
        "seconds_p99": float(np.percentile(seconds, 99)) if len(seconds) else None,
        "seconds_first_5_min": float(np.median(seconds[: max(1, len(seconds) // 6)]))
        if len(seconds)
        else None,
        "seconds_last_5_min": float(np.median(seconds[-max(1, len(seconds) // 6) :]))
        if len(seconds)
        else None,
    }
    results["load_end"] = [round(x, 2) for x in os.getloadavg()]
    out = ROOT / ".pitstop" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    plot(out / "soak.png", times, series, warmup_s)
    (out / "soak.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "soak-samples.csv").write_text(
        "seconds,"
        + ",".join(series)
        + "\n"
        + "\n".join(
            f"{t:.0f}," + ",".join(f"{series[g][i]:.1f}" for g in series)
            for i, t in enumerate(times)
        )
        + "\n",
        encoding="utf-8",
    )
    print(json.dumps({k: results[k] for k in ("rss", "micro_batches")}, indent=2))
    print(f"wrote {out / 'soak.json'}, {out / 'soak.png'}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
