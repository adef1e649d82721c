"""The raw scoring ceiling of the Pitstop LSTM on this machine, outside Spark.

Measures windows/s for the network alone (pre-encoded tensors) and for the streaming
job's fast path (`Forecaster.predict` on contract rows, encoding included), in:
  - 2 processes x 1 torch thread   (the shape DESIGN.md calls the ceiling)
  - 1 process  x 2 torch threads
  - 1 process  x 1 torch thread    (reference)
Run: python benchmarks/lstm_ceiling.py [--batch 1000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from dataclasses import dataclass

SETUPS: tuple[tuple[int, int], ...] = ((2, 1), (1, 2), (1, 1))  # (processes, threads each)


@dataclass(frozen=True)
class Job:
    """What each worker process measures."""

    path: str  # "network" or "forecaster"
    threads: int
    batch: int
    window: int
    seconds: float


def _work(job: Job, ready: mp.Barrier, results: mp.Queue) -> None:
    import numpy as np
    import pandas as pd
    import torch

    from models.forecasting.lstm import CycleLstm, predict_lstm
    from models.forecasting.lstm_windows import LstmSpec, encode_windows

    torch.set_num_threads(job.threads)
    torch.manual_seed(0)
    spec = LstmSpec(window_days=job.window)
    model = CycleLstm(spec).eval()
    rng = np.random.default_rng(os.getpid())
    frame = pd.DataFrame(
        {
            "daily_cycles": list(rng.gamma(4.0, 0.3, (job.batch, job.window))),
            "lifetime_cycles_used": 100.0,
            "battery_rated_cycles": 500.0,
            "battery_age_days": 100.0,
        }
    )
    x, base, _ = encode_windows(frame, spec)
    windows, baseline = torch.from_numpy(x), torch.from_numpy(base)

    def once() -> None:
        if job.path == "network":
            with torch.inference_mode():
                model(windows, baseline)
        else:
            predict_lstm(model, spec, frame, batch_size=job.batch)

    once()  # warm-up: first calls allocate and pick kernels
    ready.wait()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < job.seconds:
        once()
        done += job.batch
    results.put(done / (time.perf_counter() - start))


def measure(
    path: str, processes: int, threads: int, batch: int, window: int, seconds: float
) -> float:
    """Aggregate windows/s of `processes` workers running side by side."""
    context = mp.get_context("spawn")  # a clean torch per process, as Spark's workers have
    ready = context.Barrier(processes)
    results: mp.Queue = context.Queue()
    job = Job(path, threads, batch, window, seconds)
    workers = [context.Process(target=_work, args=(job, ready, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def main() -> None:
    """Print windows/s per setup and path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000, help="windows per forward pass")
    parser.add_argument("--window", type=int, default=60, help="days per window")
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per setup")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'path':<11} {'processes x threads':>20} {'windows/s':>11}")
    for path in ("network", "forecaster"):
        for processes, threads in SETUPS:
            rate = measure(path, processes, threads, args.batch, args.window, args.seconds)
            print(f"{path:<11} {f'{processes} x {threads}':>20} {rate:>11,.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
