"""What a micro-batch's Delta commits cost, option by option, and the floor they leave.

Every micro-batch of the battery stream must commit its sinks before the next one starts:
append to `telemetry` and `battery_forecasts`, and change `battery_alerts`. This script
makes exactly those commits on synthetic rows that are already computed (the real table
schemas; no Kafka read, no state, no model) and times, per micro-batch:

  appends      Delta's idempotent append (`txnAppId`, stream v1) against the commit marker
               the stream now writes (`streaming.delta_appends`), then one option at a time
               on top: statistics only on the columns readers filter, one file per append,
               a checkpoint every 50 commits instead of 10, one snapshot partition;
  alerts       the same alert changes as Spark's MERGE with stream v1's OR join, Spark's
               MERGE keyed on alert_id, and a keyed delta-rs MERGE from the driver (v2);
  floor        the v2 contract sinks side by side: both appends and the delta-rs MERGE.

Micro-batches run back to back once they last longer than the trigger, so a reading waits
for the running batch (uniform over 0..B) and then its own (B): median latency 1.5 B. The
script prints that bound for the floor.

Run: python benchmarks/sink_floor.py [--batches 12] [--readings 2000]
Writes .pitstop/bench/sink_floor.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

from core.config import StorageConfig, load_config  # noqa: E402

# Stream v1's alert MERGE join: an OR of an upsert match and a close match.
V1_JOIN = (
    "(NOT s._close AND t.battery_id = s.battery_id"
    " AND (t.status IN ('open', 'acknowledged') OR t.alert_id = s.alert_id))"
    " OR (s._close AND t.car_id = s.car_id AND t.battery_id <> s.battery_id"
    " AND t.status = 'open' AND s.first_date >= t.alert_date)"
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
        if field.name in ("battery_id", "key"):
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
        elif isinstance(kind, T.LongType):
            value = F.col("id") + batch * rows
        else:
            value = (F.rand() * 100).cast(kind)
        columns.append(value.cast(kind).alias(field.name))
    return spark.range(rows).repartition(2).select(*columns).localCheckpoint(eager=True)


def alert_changes(batch: int, predicted: int, opened: int, stored: int):
    """A micro-batch's plan: `predicted` batteries due to alert, of which `opened` are new
    (ids past the `stored` alerts the table was seeded with) and the rest refreshed."""
    import pandas as pd

    from streaming.battery.alerts import ALERT_COLUMNS, INSERT, UPDATE

    now = dt.datetime.now(dt.timezone.utc)
    day = dt.date(2025, 1, 1) + dt.timedelta(days=batch)
    refreshed = [(batch * 7 + k) % max(1, stored) for k in range(predicted - opened)]
    new = [stored + batch * opened + k for k in range(opened)]
    rows = [
        {
            "alert_id": f"{i:016x}",
            "battery_id": f"B{i:05d}",
            "car_id": f"C{i:05d}",
            "status": "open",
            "alert_date": day,
            "predicted_failure_date": day + dt.timedelta(days=20),
            "days_to_failure": 20,
            "last_reading_date": day,
            "lifetime_cycles_used": 480.0,
            "battery_rated_cycles": 500.0,
            "model_name": "battery-cycles-rnn",
            "model_version": "1",
            "message": "m",
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
            "close_reason": None,
            "published_at": None,
            "_op": op,
        }
        for ids, op in ((refreshed, UPDATE), (new, INSERT))
        for i in ids
    ]
    return pd.DataFrame(rows, columns=[*ALERT_COLUMNS, "_op"])


def seeded(alerts: int):
    """The plan that fills a new alert table with `alerts` open alerts."""
    return alert_changes(0, alerts, alerts, 0)


def timed(fn, batches: int, warmup: int) -> dict[str, float]:
    seconds = []
    for batch in range(batches):
        start = time.perf_counter()
        fn(batch)
        seconds.append(time.perf_counter() - start)
    kept = seconds[warmup:]
    return {
        "p50_s": float(np.median(kept)),
        "mean_s": float(np.mean(kept)),
        "max_s": float(np.max(kept)),
        "batches": len(kept),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from streaming import tables
    from streaming.battery.alert_table import AlertTable
    from streaming.battery.alerts import AlertChanges
    from streaming.delta_appends import AppendLedger
    from streaming.query import run_side_by_side
    from streaming.session import build_spark_session

    root = Path(tempfile.mkdtemp(prefix="pitstop-sink-floor-"))
    base = load_config("local")
    cfg = base.model_copy(
        update={"storage": StorageConfig(lake=str(root / "lake"), checkpoints=str(root / "ck"))}
    )
    spark = build_spark_session(cfg, app_name="pitstop-sink-floor")
    batches, warmup, n = args.batches + args.warmup, args.warmup, args.readings
    readings = [
        synthetic(spark, tables.TELEMETRY_SCHEMA, n, b, args.batteries) for b in range(batches)
    ]
    forecasts = [
        synthetic(spark, tables.FORECAST_SCHEMA, n, b, args.batteries) for b in range(batches)
    ]
    results: dict[str, Any] = {"readings_per_batch": n, "load_start": os.getloadavg()}
    try:
        # --- appends, one option at a time on top of the previous ---------------------
        variants = [
            ("txnAppId (stream v1)", {}, "txn", 2),
            ("commit marker, Delta defaults", {}, "marker", 2),
            (
                "+ stats on filter columns",
                {"delta.dataSkippingStatsColumns": "battery_id,car_id,date"},
                "marker",
                2,
            ),
            (
                "+ one file per append",
                {"delta.dataSkippingStatsColumns": "battery_id,car_id,date"},
                "marker",
                1,
            ),
            (
                "+ checkpoint every 50",
                {
                    "delta.dataSkippingStatsColumns": "battery_id,car_id,date",
                    "delta.checkpointInterval": "50",
                },
                "marker",
                1,
            ),
        ]
        appends = {}
        for index, (label, props, mode, files) in enumerate(variants):
            path = str(root / f"append-{index}")
            create = DeltaTable.create(spark).location(path).addColumns(tables.TELEMETRY_SCHEMA)
            for key, value in props.items():
                create = create.property(key, value)
            create.execute()
            ledger = AppendLedger(spark)

            def append(batch, path=path, mode=mode, files=files, ledger=ledger):
                frame = readings[batch].coalesce(files)
                if mode == "txn":
                    frame.write.format("delta").mode("append").option("txnAppId", "bench").option(
                        "txnVersion", batch
                    ).save(path)
                else:
                    ledger.append(frame, path, "bench", batch)

            appends[label] = timed(append, batches, warmup)
            print(f"append  {label:<34} p50 {appends[label]['p50_s']:.3f} s", flush=True)
        spark.conf.set("spark.databricks.delta.snapshotPartitions", "1")
        label = "+ one snapshot partition"
        path = str(root / "append-sp1")
        create = DeltaTable.create(spark).location(path).addColumns(tables.TELEMETRY_SCHEMA)
        for key, value in variants[-1][1].items():
            create = create.property(key, value)
        create.execute()
        ledger = AppendLedger(spark)
        appends[label] = timed(
            lambda b: ledger.append(readings[b].coalesce(1), path, "bench", b), batches, warmup
        )
        print(f"append  {label:<34} p50 {appends[label]['p50_s']:.3f} s", flush=True)
        spark.conf.set("spark.databricks.delta.snapshotPartitions", "2")
        results["appends"] = appends

        # --- alert changes ----------------------------------------------------------------
        alerts: dict[str, Any] = {}
        for label in (
            "Spark MERGE, v1 OR join",
            "Spark MERGE keyed on alert_id",
            "delta-rs MERGE keyed (v2)",
        ):
            path = str(root / f"alerts-{len(alerts)}")
            DeltaTable.create(spark).location(path).addColumns(tables.ALERT_SCHEMA).execute()
            table = AlertTable(path)
            table.merge(AlertChanges(seeded(args.alerts), None), "seed", 0)

            def change(batch, label=label, path=path, table=table):
                plan = alert_changes(batch + 1, args.predicted, args.opened, args.alerts)
                if label.startswith("delta-rs"):
                    table.merge(AlertChanges(plan, None), "bench", batch)
                    return
                source = (
                    spark.createDataFrame(plan.drop(columns="_op"))
                    .withColumn("_close", F.lit(False))
                    .withColumn("first_date", F.lit(None).cast("date"))
                )
                join = V1_JOIN if "OR" in label else "t.alert_id = s.alert_id"
                (
                    DeltaTable.forPath(spark, path)
                    .alias("t")
                    .merge(source.alias("s"), join)
                    .whenMatchedUpdate(
                        condition="t.status = 'open'",
                        set={"days_to_failure": "s.days_to_failure", "updated_at": "s.updated_at"},
                    )
                    .whenNotMatchedInsert(
                        values={c: f"s.{c}" for c in tables.ALERT_SCHEMA.fieldNames()}
                    )
                    .execute()
                )

            alerts[label] = timed(change, batches, warmup)
            print(f"alerts  {label:<34} p50 {alerts[label]['p50_s']:.3f} s", flush=True)
        results["alerts"] = alerts

        # --- the v2 floor: both appends and the alert MERGE side by side --------------------
        paths = {}
        for name in (tables.TELEMETRY, tables.FORECASTS, tables.ALERTS):
            paths[name] = str(root / f"floor-{name}")
            create = DeltaTable.create(spark).location(paths[name]).addColumns(tables.SCHEMAS[name])
            for key, value in tables.TABLE_PROPERTIES[name].items():
                create = create.property(key, value)
            create.execute()
        floor_table = AlertTable(paths[tables.ALERTS])
        floor_table.merge(AlertChanges(seeded(args.alerts), None), "seed", 0)
        ledger = AppendLedger(spark)

        def floor(batch):
            run_side_by_side(
                spark,
                [
                    lambda: ledger.append(
                        readings[batch].coalesce(1), paths[tables.TELEMETRY], "bench", batch
                    ),
                    lambda: ledger.append(
                        forecasts[batch].coalesce(1), paths[tables.FORECASTS], "bench", batch
                    ),
                    lambda: floor_table.merge(
                        AlertChanges(
                            alert_changes(batch + 1, args.predicted, args.opened, args.alerts), None
                        ),
                        "bench",
                        batch,
                    ),
                ],
            )

        results["floor"] = timed(floor, batches, warmup)
        b = results["floor"]["p50_s"]
        results["floor"]["implied_latency_p50_s"] = 1.5 * b
        results["floor"]["readings_per_s"] = n / results["floor"]["mean_s"]
        rate = results["floor"]["readings_per_s"]
        print(
            f"floor   v2 contract sinks side by side   p50 {b:.3f} s -> latency p50 "
            f">= {1.5 * b:.2f} s, {rate:,.0f} readings/s",
            flush=True,
        )
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["load_end"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12, help="timed micro-batches per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--readings", type=int, default=2000, help="rows per append")
    parser.add_argument("--batteries", type=int, default=200)
    parser.add_argument("--alerts", type=int, default=500, help="alerts already in the table")
    parser.add_argument(
        "--predicted", type=int, default=20, help="batteries due to alert per batch"
    )
    parser.add_argument("--opened", type=int, default=2, help="alerts opened per batch")
    args = parser.parse_args(argv)
    results = run(args)
    out = ROOT / ".pitstop" / "bench" / "sink_floor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"load {results['load_start']} -> {results['load_end']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
