"""The floor under a micro-batch: what its Delta writes alone cost on this machine.

Every micro-batch of the battery stream must commit its sinks before the next one starts:
append to `telemetry`, `quarantine` and `battery_forecasts` (txnAppId/txnVersion), MERGE
`battery_alerts`, then mark the openings it published. This script runs exactly those
calls (`streaming.sinks`, the real table schemas) on synthetic rows that are already
computed, with no Kafka read, no history lookup and no model -- the most favourable case
the pipeline could ever reach. Three schedules:

  sequential     one sink after another;
  parallel       all appends and the MERGE start together (the pipeline overlaps them so);
  contract only  parallel, only the writes every micro-batch must make under DESIGN.md's
                 contract: telemetry and forecasts appends and the alert MERGE. No
                 quarantine (written only when something is rejected) and no outbox mark
                 (Pitstop's way to publish exactly once), so the floor below holds for any
                 design with these sinks.

Micro-batches run back to back once they last longer than the trigger, so a reading waits
for the running batch to end (uniform over 0..B) and then its own batch (B): its latency is
B + U(0, B), whose median is 1.5 B and 99th percentile ~2 B. The script prints that implied
latency for the measured "contract only" batch, a lower bound for event-to-alert latency.
With large micro-batches (`--readings 100000`), readings per second of the sinks alone bound
backlog throughput the same way.

Run: python benchmarks/sink_floor.py [--batches 12] [--readings 2000]
Writes .pitstop/bench/sink_floor.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pitstop.config import StorageConfig, load_config  # noqa: E402

# (name, sinks side by side, all sinks: else no quarantine append and no outbox mark)
SCHEDULES = (
    ("sequential", False, True),
    ("parallel", True, True),
    ("contract only", True, False),
)
# Columns `sinks.update_alerts` takes: one row per battery predicted to fail.
ALERT_SOURCE = (
    "alert_id string, battery_id string, car_id string, alert_date date, "
    "predicted_failure_date date, days_to_failure int, last_reading_date date, "
    "lifetime_cycles_used double, battery_rated_cycles double, model_name string, "
    "model_version string"
)


def synthetic(spark, schema, rows: int, batch: int, batteries: int):
    """`rows` rows of `schema`: battery ids cycle over the fleet, dates advance per batch."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    battery = F.format_string("B%05d", F.col("id") % batteries)
    day = F.date_add(
        F.lit("2025-01-01").cast("date"), batch * 30 + (F.col("id") / batteries).cast("int")
    )
    columns = []
    for field in schema.fields:
        kind = field.dataType
        if field.name == "battery_id" or field.name == "key":
            value = battery
        elif field.name == "car_id":
            value = F.format_string("C%05d", F.col("id") % batteries)
        elif isinstance(kind, T.StringType):
            value = F.format_string(f"{field.name}-%d", F.col("id"))
        elif isinstance(kind, T.DateType):
            value = day
        elif isinstance(kind, T.TimestampType):
            value = F.current_timestamp()
        elif isinstance(kind, T.ArrayType):
            value = F.array(*[F.rand() * 3 for _ in range(30)])
        elif isinstance(kind, T.BinaryType):
            value = F.col("id").cast("string").cast("binary")
        elif isinstance(kind, T.BooleanType):
            value = F.lit(False)
        elif isinstance(kind, T.LongType):
            value = F.col("id") + batch * rows
        else:
            value = (F.rand() * 100).cast(kind)
        columns.append(value.cast(kind).alias(field.name))
    return spark.range(rows).select(*columns).localCheckpoint(eager=True)


def alert_source(spark, batch: int, predicted: int, opened: int):
    """`predicted` batteries predicted to fail; `opened` of them are new this batch."""
    import datetime as dt

    today = dt.date(2025, 1, 1) + dt.timedelta(days=batch)
    rows = []
    for i in range(batch * opened, batch * opened + predicted):
        battery = f"B{i:05d}"
        rows.append(
            (
                f"{i:016x}",
                battery,
                f"C{i:05d}",
                today,
                today + dt.timedelta(days=20),
                20,
                today,
                480.0,
                500.0,
                "battery-cycles-rnn",
                "1",
            )
        )
    return spark.createDataFrame(rows, ALERT_SOURCE).localCheckpoint(eager=True)


def run(args: argparse.Namespace) -> dict[str, Any]:

    from streaming import sinks, tables
    from streaming.alert_publisher import unpublished_openings
    from streaming.session import build_spark_session

    root = Path(tempfile.mkdtemp(prefix="pitstop-sink-floor-"))
    base = load_config("local")
    cfg = base.model_copy(
        update={"storage": StorageConfig(lake=str(root / "lake"), checkpoints=str(root / "ckpt"))}
    )
    spark = build_spark_session(cfg, app_name="pitstop-sink-floor")
    try:
        paths = tables.ensure_tables(spark, cfg)

        def one_batch(batch: int, parallel: bool, every_sink: bool) -> dict[str, float]:
            frames = {
                tables.TELEMETRY: synthetic(
                    spark, tables.TELEMETRY_SCHEMA, args.readings, batch, args.batteries
                ),
                tables.QUARANTINE: synthetic(
                    spark, tables.QUARANTINE_SCHEMA, max(1, args.readings // 100), batch, 1
                ),
                tables.FORECASTS: synthetic(
                    spark, tables.FORECAST_SCHEMA, args.readings, batch, args.batteries
                ),
            }
            alerts = alert_source(spark, batch, args.predicted, args.opened)
            spent: dict[str, float] = {}

            def timed(name, fn):
                def call():
                    started = time.perf_counter()
                    fn()
                    spent[name] = time.perf_counter() - started

                return call

            def append(name):
                return timed(
                    f"append {name}",
                    lambda: sinks.append_once(frames[name], paths[name], f"floor-{name}", batch),
                )

            def alerts_then_mark():
                started = time.perf_counter()
                sinks.update_alerts(spark, paths[tables.ALERTS], alerts)
                spent["alerts MERGE"] = time.perf_counter() - started
                if not every_sink:
                    return
                started = time.perf_counter()
                pending = unpublished_openings(spark, paths[tables.ALERTS])
                opened = [r.alert_id for r in pending.select("alert_id").collect()]
                sinks.mark_published(spark, opened, paths[tables.ALERTS])
                spent["mark published"] = time.perf_counter() - started

            work = [append(tables.TELEMETRY), append(tables.FORECASTS), alerts_then_mark]
            if every_sink:
                work.append(append(tables.QUARANTINE))
            started = time.perf_counter()
            if parallel:
                with ThreadPoolExecutor(len(work)) as pool:
                    for future in [pool.submit(task) for task in work]:
                        future.result()
            else:
                for task in work:
                    task()
            spent["batch"] = time.perf_counter() - started
            for frame in (*frames.values(), alerts):
                sinks.release_checkpoint(frame)
            return spent

        results: dict[str, Any] = {"config": vars(args)}
        batch = 0
        for schedule, parallel, every_sink in SCHEDULES:
            timings = []
            for i in range(args.warmup + args.batches):
                spent = one_batch(batch, parallel, every_sink)
                batch += 1
                if i >= args.warmup:
                    timings.append(spent)
            walls = np.array([t["batch"] for t in timings])
            results[schedule] = {
                "batch_p50_s": float(np.median(walls)),
                "batch_mean_s": float(walls.mean()),
                "batch_max_s": float(walls.max()),
                "readings_per_s": args.readings / float(walls.mean()),
                "sinks_median_s": {
                    name: float(np.median([t[name] for t in timings]))
                    for name in timings[0]
                    if name != "batch"
                },
            }
        mean = results["contract only"]["batch_mean_s"]
        results["implied_latency_floor"] = {"p50_s": 1.5 * mean, "p99_s": 1.99 * mean}
        return results
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=12, help="timed micro-batches each")
    parser.add_argument("--warmup", type=int, default=3, help="untimed micro-batches first")
    parser.add_argument(
        "--readings", type=int, default=2000, help="readings per micro-batch (1,000/s x 2 s)"
    )
    parser.add_argument("--batteries", type=int, default=200, help="fleet size")
    parser.add_argument(
        "--predicted", type=int, default=200, help="batteries predicted to fail per batch"
    )
    parser.add_argument("--opened", type=int, default=10, help="of which newly opened")
    args = parser.parse_args(argv)
    results = run(args)
    out = ROOT / ".pitstop" / "bench" / "sink_floor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nSinks of one micro-batch, {args.readings} readings, no read/lookup/model:")
    for schedule, _parallel, _every_sink in SCHEDULES:
        r = results[schedule]
        print(
            f"  {schedule:<13}  p50 {r['batch_p50_s']:.2f} s  mean {r['batch_mean_s']:.2f} s"
            f"  max {r['batch_max_s']:.2f} s  {r['readings_per_s']:,.0f} readings/s   "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["sinks_median_s"].items())
        )
    floor = results["implied_latency_floor"]
    print(
        f"  implied event-to-alert latency floor (back-to-back 'contract only' batches):"
        f" p50 >= {floor['p50_s']:.1f} s, p99 >= {floor['p99_s']:.1f} s"
    )
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
