"""Run every benchmark in turn (`make bench`); each prints its own figures.

They measure on this machine, so run them on a quiet one: 2 cores are easily shared.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = (
    "broker_start.py",
    "simulator_throughput.py",
    "lstm_ceiling.py",
    "compliance.py",
    "forecast_quality.py",
    "stream_benchmark.py",
    "sink_floor.py",
    "state_scale.py",  # ~15 minutes
    "console_render.py",
    "soak.py",  # 30 minutes
)


def main() -> int:
    failed = []
    for script in ORDER:
        started = time.monotonic()
        print(f"\n=== {script} ===", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script)])
        print(f"=== {script}: exit {code}, {time.monotonic() - started:.0f}s ===", flush=True)
        if code:
            failed.append(script)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
