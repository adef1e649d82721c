"""How fast the console's pages render on a big lake: 1M telemetry rows, 10k alerts.

Builds the lake with the real writers -- Spark appends into the tables `ensure_tables`
creates (telemetry in 20 micro-batch-sized appends, forecasts computed by Spark from them,
quarantine and `forecast_accuracy` rows), the stream's delta-rs alert MERGE for 10,000
alerts, `acknowledge_alert` for some of them -- trains a small champion so the Models page
has a registry, starts a broker of its own for the Stream page's lag, then serves the
console (uvicorn, in this process) and times every page:

- server: the HTTP response (requests), p50/p95 over N loads;
- browser: Debian's chromium (Playwright) from navigation until every chart is drawn;

each cold (the console's caches emptied before every load: every table read again, the OS
file cache stays warm) and warm (the same page again, nothing changed).
Target: every page <= 1 s p95. Run it on a quiet machine.

    python benchmarks/console_render.py [--batteries 10000] [--days 100] [--loads 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from streamkit import bench_config, free_port, start_bench_broker, train_champion  # noqa: E402

from tests.console_fixtures import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402

log = logging.getLogger("pitstop.bench.console")

QUARANTINE_ROWS = 5_000
ACCURACY_DAYS = 14
BATCHES = 20


def build_lake(spark, cfg, batteries: int, days: int) -> dict[str, int]:
    """Write every table the console reads; returns row counts."""
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    from apps.training_data import simulated_readings
    from streaming import tables

    paths = tables.ensure_tables(spark, cfg)
    started = time.monotonic()
    readings = simulated_readings(batteries=batteries, days=days, seed=21)
    log.info("simulated %d readings in %.0fs", len(readings), time.monotonic() - started)
    readings["date"] = pd.to_datetime(readings["date"]).dt.date
    readings = readings.sort_values(["date", "battery_id"], ignore_index=True)
    readings["schema_version"] = 1
    now = dt.datetime.now(dt.timezone.utc)
    readings["topic"] = "battery-telemetry"
    readings["partition"] = readings.index % 4
    readings["offset"] = readings.index // 4
    readings["kafka_timestamp"] = now
    readings["extra"] = None
    per_batch = -(-len(readings) // BATCHES)
    for batch in range(BATCHES):
        part = readings.iloc[batch * per_batch : (batch + 1) * per_batch].copy()
        # Ingest times spread over the last few hours, as a stream's micro-batches are.
        part["ingested_at"] = now - dt.timedelta(minutes=10 * (BATCHES - batch))
        part["ingest_batch"] = batch
        frame = spark.createDataFrame(
            part.reindex(columns=tables.TELEMETRY_SCHEMA.fieldNames()),
            schema=tables.TELEMETRY_SCHEMA,
        )
        frame.write.format("delta").mode("append").save(paths[tables.TELEMETRY])
    log.info("telemetry written in %.0fs", time.monotonic() - started)

    # Forecasts: each reading's last-week mean held for 30 days, in Spark from telemetry,
    # appended per ingest batch as the stream appends them (so each file covers a few days).
    telemetry = spark.read.format("delta").load(paths[tables.TELEMETRY])
    week = Window.partitionBy("battery_id").orderBy("date").rowsBetween(-6, 0)
    mean = F.avg("daily_cycles_used").over(week)
    left = F.col("battery_rated_cycles") - F.col("lifetime_cycles_used")
    days_left = F.when(left <= 0, F.lit(0)).otherwise(F.ceil(left / F.col("mean")))
    forecasts = (
        telemetry.withColumn("mean", mean)
        .withColumn("days", days_left)
        .select(
            "ingest_batch",
            "battery_id",
            "car_id",
            "date",
            "lifetime_cycles_used",
            "battery_rated_cycles",
            F.array_repeat(F.col("mean"), 30).alias("forecast"),
            F.when(F.col("days") <= 30, F.col("days")).cast("int").alias("days_to_failure"),
            F.when(F.col("days") <= 30, F.date_add("date", F.col("days").cast("int"))).alias(
                "predicted_failure_date"
            ),
            F.lit("battery-cycles-rnn").alias("model_name"),
            F.lit("1").alias("model_version"),
            F.lit("champion").alias("model_role"),
            F.current_timestamp().alias("scored_at"),
        )
        .localCheckpoint(eager=True)
    )
    for batch in range(BATCHES):
        (
            forecasts.where(F.col("ingest_batch") == batch)
            .drop("ingest_batch")
            .coalesce(1)
            .write.format("delta")
            .mode("append")
            .save(paths[tables.FORECASTS])
        )
    log.info("forecasts written in %.0fs", time.monotonic() - started)

    _write_alerts(cfg, paths[tables.ALERTS], readings)
    _write_quarantine(spark, paths[tables.QUARANTINE], now)
    accuracy_rows = _write_accuracy(spark, cfg)
    log.info("lake built in %.0fs", time.monotonic() - started)
    return {
        "telemetry": len(readings),
        "alerts": batteries,
        "quarantine": QUARANTINE_ROWS,
        "accuracy": accuracy_rows,
    }


def _write_alerts(cfg, path: str, readings) -> None:
    """One alert per battery (its last reading) through the stream's MERGE; 1 in 20
    acknowledged by an operator."""
    import pandas as pd

    from apps.alerts import acknowledge_alert
    from streaming.battery.alert_table import AlertTable, commit_alert_changes
    from streaming.battery.alerts import FOUND_COLUMNS, alert_id, alert_message

    last = readings.groupby("battery_id", sort=False).tail(1)
    found = pd.DataFrame(
        {
            "alert_id": [
                alert_id(b, d) for b, d in zip(last["battery_id"], last["date"], strict=True)
            ],
            "battery_id": last["battery_id"].to_numpy(),
            "car_id": last["car_id"].to_numpy(),
            "alert_date": last["date"].to_numpy(),
            "predicted_failure_date": [
                d + dt.timedelta(days=5 + i % 25) for i, d in enumerate(last["date"])
            ],
            "days_to_failure": [5 + i % 25 for i in range(len(last))],
            "last_reading_date": last["date"].to_numpy(),
            "lifetime_cycles_used": last["lifetime_cycles_used"].to_numpy(),
            "battery_rated_cycles": last["battery_rated_cycles"].to_numpy(),
            "model_name": "battery-cycles-rnn",
            "model_version": "1",
        }
    )
    found["message"] = [alert_message(d) for d in found["predicted_failure_date"]]
    arrivals = pd.DataFrame(columns=["car_id", "battery_id", "date"])
    commit_alert_changes(AlertTable(path), found[list(FOUND_COLUMNS)], arrivals, "bench", 0)
    for alert in found["alert_id"].iloc[::20][:50]:
        acknowledge_alert(cfg, alert, by="bench", why="benchmark")


def _write_quarantine(spark, path: str, now: dt.datetime) -> None:
    import pandas as pd

    from streaming import tables

    reasons = ["not_json", "missing_field", "out_of_range", "late", "duplicate"]
    rows = pd.DataFrame(
        {
            "source": "battery-telemetry",
            "key": [f"B{i % 997:06d}" for i in range(QUARANTINE_ROWS)],
            "payload": [b"x"] * QUARANTINE_ROWS,
            "payload_text": [
                "<script>alert(1)</script>" if i % 50 == 0 else f'{{"broken": {i}'
                for i in range(QUARANTINE_ROWS)
            ],
            "reason": [reasons[i % len(reasons)] for i in range(QUARANTINE_ROWS)],
            "topic": "battery-telemetry",
            "partition": [i % 4 for i in range(QUARANTINE_ROWS)],
            "offset": list(range(QUARANTINE_ROWS)),
            "kafka_timestamp": now,
            "ingested_at": [now - dt.timedelta(seconds=40 * i) for i in range(QUARANTINE_ROWS)],
        }
    )
    frame = spark.createDataFrame(rows, schema=tables.QUARANTINE_SCHEMA)
    frame.write.format("delta").mode("append").save(path)


def _write_accuracy(spark, cfg) -> int:
    """Stored forecasts of some batteries' last days joined with the readings that followed."""
    from pyspark.sql import functions as F

    from streaming import tables

    forecasts = spark.read.format("delta").load(cfg.storage.table(tables.FORECASTS))
    telemetry = spark.read.format("delta").load(cfg.storage.table(tables.TELEMETRY))
    last_day = telemetry.agg(F.max("date")).first()[0]
    chosen = (
        forecasts.where(F.col("date") > F.date_sub(F.lit(last_day), 30 + ACCURACY_DAYS))
        .where(F.col("date") <= F.date_sub(F.lit(last_day), 30))
        .where(F.abs(F.hash("battery_id")) % 10 == 0)
    )
    exploded = chosen.select(
        "model_name",
        "model_version",
        "model_role",
        "battery_id",
        F.col("date").alias("forecast_date"),
        F.posexplode("forecast").alias("pos", "forecast"),
    )
    actuals = telemetry.select(
        "battery_id", F.col("date").alias("target_date"), F.col("daily_cycles_used").alias("actual")
    )
    rows = (
        exploded.withColumn("horizon_day", (F.col("pos") + 1).cast("int"))
        .withColumn("target_date", F.date_add("forecast_date", F.col("horizon_day")))
        .join(actuals, ["battery_id", "target_date"])
        .select(
            "model_name",
            "model_version",
            "model_role",
            "battery_id",
            "forecast_date",
            "horizon_day",
            "target_date",
            "forecast",
            "actual",
            (F.col("forecast") - F.col("actual")).alias("error"),
            F.current_timestamp().alias("computed_at"),
            F.lit(0).cast("long").alias("monitor_batch"),
        )
    )
    path = cfg.storage.table("forecast_accuracy")
    rows.write.format("delta").mode("append").save(path)
    return spark.read.format("delta").load(path).count()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def serve(cfg) -> tuple[str, Any, Any]:
    """The console in a uvicorn thread on a free port: (base URL, app, server)."""
    import uvicorn

    from apps.console.app import create_app

    app = create_app(cfg, token=None)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", app, server


def forget(app) -> None:
    """Empty the console's caches: the next load reads every table again."""
    state = app.state.console
    state.lake.clear()
    state.registry._kept.clear()


def time_pages(base: str, app, pages: dict[str, str], loads: int) -> list[dict[str, Any]]:
    """Server and browser timings of every page, cold and warm."""
    import requests
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(base + "/")  # plotly.js into the browser's cache, as for any operator
        page.wait_for_selector("body[data-charts-drawn=true]")
        for name, path in pages.items():
            for cache in ("cold", "warm"):
                server, full = [], []
                requests.get(base + path, timeout=60)  # warm: the cache holds this page
                for _ in range(loads):
                    if cache == "cold":
                        forget(app)
                    started = time.perf_counter()
                    response = requests.get(base + path, timeout=60)
                    server.append(time.perf_counter() - started)
                    response.raise_for_status()
                for _ in range(loads):
                    if cache == "cold":
                        forget(app)
                    started = time.perf_counter()
                    page.goto(base + path, wait_until="load")
                    page.wait_for_selector("body[data-charts-drawn=true]")
                    full.append(time.perf_counter() - started)
                row = {
                    "page": name,
                    "cache": cache,
                    "server_p50": percentile(server, 50),
                    "server_p95": percentile(server, 95),
                    "browser_p50": percentile(full, 50),
                    "browser_p95": percentile(full, 95),
                    "loads": loads,
                }
                log.info("%s", row)
                results.append(row)
        browser.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batteries", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="keep the lake and results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("py4j", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not Path(CHROMIUM).exists():
        print(f"No browser at {CHROMIUM}: `make browser` installs Debian's chromium.")
        return 2

    from core.config import load_config
    from streaming.session import build_spark_session

    root = (args.out or Path(tempfile.mkdtemp(prefix="pitstop-console-bench-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    base_cfg = load_config("local")
    broker = start_bench_broker(base_cfg, root / "broker", {"battery-telemetry": 4})
    try:
        cfg = bench_config(root, broker.bootstrap, "console", "battery-telemetry")
        train_champion(cfg)
        spark = build_spark_session(cfg, app_name="pitstop-console-bench")
        try:
            counts = build_lake(spark, cfg, args.batteries, args.days)
        finally:
            spark.stop()
        from core.lake import read_table

        alerts = read_table(cfg, "battery_alerts", columns=["battery_id", "car_id", "status"])
        open_alert = alerts[alerts["status"] == "open"].iloc[len(alerts) // 2]
        pages = {
            "fleet": "/",
            "battery": f"/battery?battery_id={open_alert.battery_id}",
            "alerts": "/alerts",
            "alerts (car filter)": f"/alerts?car={open_alert.car_id}",
            "quarantine": "/quarantine",
            "models": "/models",
            "stream": "/stream",
        }
        log.info("load average before timing: %s", os.getloadavg())
        base, app, server = serve(cfg)
        try:
            results = time_pages(base, app, pages, args.loads)
        finally:
            server.should_exit = True
    finally:
        from broker.process import stop_broker

        stop_broker(base_cfg, data_dir=broker.data_dir)

    (root / "console_render.json").write_text(
        json.dumps({"counts": counts, "results": results}, indent=2), encoding="utf-8"
    )
    print(f"\nlake: {counts}; {args.loads} loads per page and cache state")
    print(f"load average at the end: {os.getloadavg()}")
    print(f"{'page':<22}{'cache':<7}{'server p50/p95 (s)':>22}{'browser p50/p95 (s)':>24}")
    worst = 0.0
    for row in results:
        print(
            f"{row['page']:<22}{row['cache']:<7}"
            f"{row['server_p50']:>12.3f} / {row['server_p95']:.3f}"
            f"{row['browser_p50']:>14.3f} / {row['browser_p95']:.3f}"
        )
        worst = max(worst, row["browser_p95"], row["server_p95"])
    verdict = "met" if worst <= 1.0 else "NOT met"
    print(f"worst p95 {worst:.3f} s: target 1 s {verdict}")
    print(f"median of browser p50s: {statistics.median(r['browser_p50'] for r in results):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
