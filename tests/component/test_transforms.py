"""The stream's pure transformations on a local Spark session."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import Row
from pyspark.sql import types as T

from streaming import transforms
from streaming.tables import TELEMETRY_SCHEMA

pytestmark = pytest.mark.component

KAFKA_SCHEMA = T.StructType(
    [
        T.StructField("key", T.BinaryType()),
        T.StructField("value", T.BinaryType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("timestamp", T.TimestampType()),
    ]
)


def reading(battery: str = "B1", date: str = "2024-03-01", **overrides) -> dict:
    message = {
        "schema_version": 1,
        "car_id": "C1",
        "battery_id": battery,
        "date": date,
        "battery_age_days": 10,
        "number_of_trips": 2,
        "daily_trip_duration": 1.5,
        "daily_cycles_used": 1.25,
        "lifetime_cycles_used": 100.0,
        "battery_rated_cycles": 500.0,
    }
    message.update(overrides)
    return message


def kafka_rows(spark, payloads: list[bytes], start_offset: int = 0):
    now = dt.datetime(2024, 3, 1, 12)
    rows = [
        (b"k", payload, "battery-telemetry", 0, start_offset + i, now)
        for i, payload in enumerate(payloads)
    ]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def test_parse_keeps_valid_rows_and_quarantines_each_broken_one(spark):
    payloads = [
        json.dumps(reading(extra_field="kept")).encode(),
        b"not json",
        json.dumps(reading(battery_age_days=1.5)).encode(),
        json.dumps({k: v for k, v in reading().items() if k != "date"}).encode(),
        json.dumps(reading(daily_trip_duration=30)).encode(),
        json.dumps(reading(schema_version=2)).encode(),
        b"[1, 2]",
    ]
    parsed = transforms.parse_telemetry(kafka_rows(spark, payloads))
    valid = transforms.valid_readings(parsed).collect()
    quarantined = {r.offset: r.reason for r in transforms.quarantine_rows(parsed).collect()}

    assert [r.offset for r in valid] == [0]
    assert valid[0].date == dt.date(2024, 3, 1)
    assert json.loads(valid[0].extra) == {"extra_field": "kept"}
    assert quarantined == {
        1: "not JSON",
        2: "field 'battery_age_days' must be an integer, got 1.5",
        3: "missing required field 'date'",
        4: "field 'daily_trip_duration' out of range: 30.0 (must be <= 24)",
        5: "unknown schema_version 2",
        6: "not a JSON object (list)",
    }


def test_parse_rejects_frames_without_kafka_columns(spark):
    with pytest.raises(ValueError, match="Kafka columns"):
        transforms.parse_telemetry(spark.createDataFrame([Row(value=b"{}")]))


def test_split_duplicates_keeps_first_offset_and_recognises_a_replayed_record(spark):
    payloads = [json.dumps(reading(date=d)).encode() for d in ("2024-03-01", "2024-03-02")]
    payloads.append(json.dumps(reading(date="2024-03-01", daily_cycles_used=9.0)).encode())
    batch = transforms.valid_readings(transforms.parse_telemetry(kafka_rows(spark, payloads)))
    # The table already holds offset 1 (this very record, from a crashed attempt) and an
    # older reading of 2024-03-01 from another offset.
    stored = spark.createDataFrame(
        [
            tuple(row.get(f.name) for f in TELEMETRY_SCHEMA.fields)
            for row in [
                {
                    **reading(date="2024-03-02"),
                    "date": dt.date(2024, 3, 2),
                    "topic": "battery-telemetry",
                    "partition": 0,
                    "offset": 1,
                }
            ]
        ],
        TELEMETRY_SCHEMA,
    )
    new, duplicates = transforms.split_duplicates(batch, stored)

    assert sorted((r.date.isoformat(), r.offset) for r in new.collect()) == [
        ("2024-03-01", 0),
        ("2024-03-02", 1),
    ]
    assert [r.offset for r in duplicates.collect()] == [2]


def test_build_windows_fills_parked_days_and_ends_on_the_target(spark):
    rows = [reading(date=f"2024-03-0{day}", daily_cycles_used=float(day)) for day in (1, 2, 4, 5)]
    history = spark.createDataFrame(
        [
            (
                r["battery_id"],
                r["car_id"],
                dt.date.fromisoformat(r["date"]),
                r["daily_cycles_used"],
                r["lifetime_cycles_used"],
                r["battery_rated_cycles"],
                float(r["battery_age_days"]),
            )
            for r in rows
        ],
        "battery_id string, car_id string, date date, daily_cycles_used double, "
        "lifetime_cycles_used double, battery_rated_cycles double, battery_age_days double",
    )
    targets = history.where("date >= '2024-03-04'")
    windows = {r.date.day: r for r in transforms.build_windows(history, targets, 3).collect()}

    assert sorted(windows) == [4, 5]
    assert windows[4].daily_cycles == [2.0, 0.0, 4.0]  # 3 March: parked, 0 cycles
    assert windows[5].daily_cycles == [0.0, 4.0, 5.0]
    assert windows[5].car_id == "C1"

    # A micro-batch replayed after a crash finds its own records stored already, so its
    # history holds them twice: the windows come out the same.
    replayed = history.unionByName(targets)
    rows = transforms.build_windows(replayed, targets, 3).collect()
    assert sorted(r.date.day for r in rows) == [4, 5]  # one window each, not two
    again = {r.date.day: r for r in rows}
    assert again[5].daily_cycles == windows[5].daily_cycles
    assert again[5].car_id == "C1"


def test_windows_come_out_the_same_in_chunks_of_whole_batteries_on_every_core(spark, monkeypatch):
    from models.data import simulated_readings

    readings = simulated_readings(batteries=12, days=40, seed=2)
    history = spark.createDataFrame(readings)
    targets = history.where("date >= '2024-02-01'")

    def windows(partitions: int) -> dict:
        frame = transforms.build_windows(history, targets, 30, partitions, health=[])
        tasks = frame.rdd.glom().map(len).collect()
        rows = {(r.battery_id, r.date): r.daily_cycles for r in frame.collect()}
        return tasks, rows

    _, whole = windows(1)
    # Tiny chunks and tiny Arrow batches (a battery's rows span several): each pandas call
    # must still see every row of its batteries.
    monkeypatch.setattr(transforms, "ROWS_PER_CALL", 50)
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, "7")
    try:
        tasks, chunked = windows(2)
    finally:
        spark.conf.set(key, before)
    assert chunked == whole and len(whole) == targets.count()
    assert len(tasks) == 2 and min(tasks) > 0  # both cores get batteries


def test_alerts_take_the_first_triggering_date_and_the_latest_forecast(spark):
    forecasts = spark.createDataFrame(
        [
            ("B1", "C1", dt.date(2024, 3, 1), 480.0, 500.0, 40, dt.date(2024, 4, 10)),
            ("B1", "C1", dt.date(2024, 3, 2), 482.0, 500.0, 29, dt.date(2024, 3, 31)),
            ("B1", "C1", dt.date(2024, 3, 3), 484.0, 500.0, 27, dt.date(2024, 3, 30)),
            ("B2", "C2", dt.date(2024, 3, 3), 10.0, 500.0, None, None),
        ],
        "battery_id string, car_id string, date date, lifetime_cycles_used double, "
        "battery_rated_cycles double, days_to_failure int, predicted_failure_date date",
    ).selectExpr("*", "'m' as model_name", "'3' as model_version")
    alerts = transforms.alerts_from_forecasts(forecasts, 30).collect()

    assert len(alerts) == 1
    assert alerts[0].battery_id == "B1"
    assert alerts[0].alert_date == dt.date(2024, 3, 2)
    assert alerts[0].predicted_failure_date == dt.date(2024, 3, 30)
    assert alerts[0].last_reading_date == dt.date(2024, 3, 3)
    assert alerts[0].model_version == "3"


def test_alert_margin_moves_the_trigger_earlier_than_the_horizon(spark):
    forecasts = spark.createDataFrame(
        [
            ("B1", "C1", dt.date(2024, 3, 2), 482.0, 500.0, 29, dt.date(2024, 3, 31)),
            ("B1", "C1", dt.date(2024, 3, 3), 484.0, 500.0, 27, dt.date(2024, 3, 30)),
        ],
        "battery_id string, car_id string, date date, lifetime_cycles_used double, "
        "battery_rated_cycles double, days_to_failure int, predicted_failure_date date",
    ).selectExpr("*", "'m' as model_name", "'3' as model_version")
    alerts = transforms.alerts_from_forecasts(forecasts, 30, margin_days=3).collect()
    assert [a.alert_date for a in alerts] == [dt.date(2024, 3, 3)]
    assert transforms.alerts_from_forecasts(forecasts, 30, margin_days=4).count() == 0
