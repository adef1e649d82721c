"""How long the local Kafka broker takes to come up: cold (jars from the network) and warm.

    .venv/bin/python benchmarks/broker_start.py [--skip-cold]

Cold resolves the jars with an empty Maven repository into a scratch home, so it measures the
download from Maven Central as a new machine would see it. Warm starts reuse resolved jars:
"first" formats a fresh data dir, "restart" reuses a formatted one. Everything runs on free
ports under a temp dir, so a broker already running on 9092 is not disturbed.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from broker.jars import ensure_broker_jars
from broker.process import start_broker, stop_broker
from core.config import PitstopConfig, load_config

_LOG = logging.getLogger("benchmarks.broker_start")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _timed_start(cfg: PitstopConfig, data_dir: Path) -> float:
    started = time.perf_counter()
    start_broker(cfg, data_dir=data_dir, port=_free_port(), controller_port=_free_port())
    elapsed = time.perf_counter() - started
    stop_broker(cfg, data_dir=data_dir)
    return elapsed


def main() -> None:
    """Measure and print cold and warm start times in seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true", help="only measure warm starts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config()
    results: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-") as scratch:
        root = Path(scratch)
        if not args.skip_cold:
            cold_cfg = cfg.model_copy(update={"home": str(root / "home")})
            started = time.perf_counter()
            ensure_broker_jars(root / "home", maven_repo=root / "m2")
            resolve = time.perf_counter() - started
            start = _timed_start(cold_cfg, root / "cold")
            results += [
                ("cold: resolve jars (empty ~/.m2)", resolve),
                ("cold: format + start + topics", start),
                ("cold: total", resolve + start),
            ]
        started = time.perf_counter()
        ensure_broker_jars(Path(cfg.home))
        results.append(("warm: jar check", time.perf_counter() - started))
        results.append(
            ("warm: first start (format + start + topics)", _timed_start(cfg, root / "w"))
        )
        results.append(("warm: restart (formatted data dir)", _timed_start(cfg, root / "w")))
    load = os.getloadavg()[0]
    for label, seconds in results:
        print(f"{label:<46} {seconds:6.1f} s")
    print(f"{'(1-min load average, ' + str(os.cpu_count()) + ' cpus)':<46} {load:6.1f}")


if __name__ == "__main__":
    main()
