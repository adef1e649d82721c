"""Lakes for the console's tests, written by the real writers (Spark appends into the tables
`ensure_tables` creates, the stream's delta-rs alert MERGE), and a console server to test.

`forecast_accuracy` and `model_health` are written by the monitor itself
(`streaming.monitor`), over what the replay stored.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import requests

from core.config import PitstopConfig

SCRIPT_PAYLOAD = "<script>alert(1)</script>"
# Debian's chromium, headless, with nothing that reaches out to the network by itself.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def append(spark, frame: pd.DataFrame, schema, path: str) -> None:
    """Append a pandas frame to the Delta table at `path` with Spark (creating it if needed)."""
    spark.createDataFrame(frame, schema=schema).write.format("delta").mode("append").save(path)


def compliance_rows(now: dt.datetime) -> pd.DataFrame:
    """Two open compliance alerts, one of them with markup in the technician's note."""
    from streaming.notes.classify import compliance_alert_id

    cars, notes = ["C00003", "C00005"], ["N-1", "N-2"]
    return pd.DataFrame(
        {
            "car_id": cars,
            "note_id": notes,
            "component": ["bracket", "<b>clamp</b>"],
            "text": ["Iron bracket made in 1990 in poor condition", "<i>plastic</i> clamp, 1989"],
            "probability": [0.97, 0.91],
            "written_at": [now - dt.timedelta(days=2), now - dt.timedelta(days=1)],
            "model_name": ["component-compliance"] * 2,
            "model_version": ["1"] * 2,
            "created_at": [now] * 2,
            "alert_id": [compliance_alert_id(c, n) for c, n in zip(cars, notes, strict=True)],
            "status": ["open"] * 2,
            "updated_at": [now] * 2,
            "closed_at": [None] * 2,
            "close_reason": [None] * 2,
            "published_at": [now] * 2,
        }
    )


def add_open_alerts(cfg: PitstopConfig, battery_ids: list[str]) -> None:
    """Open an alert for each battery with the stream's own alert MERGE (so tests that
    acknowledge have more than the replay's one open alert)."""
    from core.lake import read_table
    from streaming import tables
    from streaming.battery.alert_table import AlertTable, commit_alert_changes
    from streaming.battery.alerts import FOUND_COLUMNS, alert_id, alert_message

    readings = read_table(cfg, tables.TELEMETRY, filters=[("battery_id", "in", battery_ids)])
    last = readings.sort_values("date").groupby("battery_id").tail(1)
    rows = []
    for reading in last.itertuples(index=False):
        fails = reading.date + dt.timedelta(days=20)
        rows.append(
            {
                "alert_id": alert_id(reading.battery_id, reading.date),
                "battery_id": reading.battery_id,
                "car_id": reading.car_id,
                "alert_date": reading.date,
                "predicted_failure_date": fails,
                "days_to_failure": 20,
                "last_reading_date": reading.date,
                "lifetime_cycles_used": reading.lifetime_cycles_used,
                "battery_rated_cycles": reading.battery_rated_cycles,
                "model_name": "battery-cycles-rnn",
                "model_version": "1",
                "message": alert_message(fails),
            }
        )
    found = pd.DataFrame(rows, columns=list(FOUND_COLUMNS))
    arrivals = pd.DataFrame(columns=["car_id", "battery_id", "date"])
    commit_alert_changes(
        AlertTable(cfg.storage.table(tables.ALERTS)), found, arrivals, "console-tests", 0
    )


def add_compliance_and_accuracy(spark, cfg: PitstopConfig) -> None:
    """Fill `compliance_alerts` (Spark) and run the accuracy monitor once over what the
    replay stored (`forecast_accuracy`, `model_health`)."""
    from streaming import tables
    from streaming.monitor.flow import run_monitor

    now = dt.datetime.now(dt.timezone.utc)
    append(
        spark,
        compliance_rows(now),
        tables.COMPLIANCE_ALERT_SCHEMA,
        cfg.storage.table(tables.COMPLIANCE_ALERTS),
    )
    # Every replayed reading already has its forecast: nothing to wait for.
    monitor = cfg.monitor.model_copy(update={"wait_seconds": 0.0, "min_pairs": 10})
    run_monitor(spark, cfg.model_copy(update={"monitor": monitor}), once=True)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def console_environment(cfg: PitstopConfig, token: str | None) -> dict[str, str]:
    """Environment variables that point `pitstop console` at `cfg`'s lake and MLflow store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITSTOP")}
    env.update(
        {
            "PITSTOP__STORAGE__LAKE": cfg.storage.lake,
            "PITSTOP__STORAGE__CHECKPOINTS": cfg.storage.checkpoints,
            "PITSTOP__STREAM__QUERY_NAME": cfg.stream.query_name,
            "PITSTOP__MLFLOW__TRACKING_URI": cfg.mlflow.tracking_uri,
            "PITSTOP__KAFKA__BOOTSTRAP_SERVERS": cfg.kafka.bootstrap_servers,
        }
    )
    if cfg.mlflow.artifact_root:
        env["PITSTOP__MLFLOW__ARTIFACT_ROOT"] = cfg.mlflow.artifact_root
    if token:
        env["PITSTOP_CONSOLE_TOKEN"] = token
    return env


@contextmanager
def console_process(
    cfg: PitstopConfig, token: str | None, log_path: Path, timeout_s: float = 120
) -> Iterator[str]:
    """`pitstop console` on a free loopback port (a real process); yields its base URL."""
    port = free_port()
    pitstop = str(Path(sys.executable).parent / "pitstop")
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [pitstop, "console", "--port", str(port)],
            env=console_environment(cfg, token),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base, process, log_path, timeout_s)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def console_thread(cfg: PitstopConfig, token: str | None) -> Iterator[tuple[str, object]]:
    """The console app served by uvicorn in this process (a real server on a free port);
    yields its base URL and the app."""
    import uvicorn

    from apps.console.app import create_app

    app = create_app(cfg, token)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("The console server did not start.")
            time.sleep(0.05)
        yield base, app
    finally:
        server.should_exit = True
        thread.join(10)


def _wait_until_up(base: str, process: subprocess.Popen, log_path: Path, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pitstop console exited: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"pitstop console did not answer within {timeout_s:.0f}s.")
