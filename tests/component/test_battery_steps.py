"""The battery flow's steps on a local Spark session: parse, state, outputs."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from streaming.battery import outputs
from streaming.battery.history import HistoryRules
from streaming.battery.readings import battery_history, parse_telemetry
from streaming.battery.scoring import model_input
from streaming.parsing import quarantine_rows

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
    parsed = parse_telemetry(kafka_rows(spark, payloads))
    valid = parsed.where("reason IS NULL").collect()
    quarantined = {r.offset: r.reason for r in quarantine_rows(parsed).collect()}

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
        parse_telemetry(spark.createDataFrame([Row(value=b"{}")]))


def test_the_state_step_decides_every_message_once_in_a_batch(spark):
    payloads = [
        json.dumps(reading(date="2024-03-01")).encode(),
        json.dumps(reading(date="2024-03-03", daily_cycles_used=3.0)).encode(),
        json.dumps(reading(date="2024-03-01", daily_cycles_used=9.0)).encode(),  # duplicate
        json.dumps(reading(battery="B2", date="2024-03-02")).encode(),
        b"not json",
    ]
    decided = battery_history(
        parse_telemetry(kafka_rows(spark, payloads)), HistoryRules(3, 14), ttl_days=90
    )
    rows = {r.offset: r for r in decided.collect()}
    assert {o: r.fate for o, r in rows.items()} == {
        0: "new",
        1: "new",
        2: "rejected",
        3: "new",
        4: "rejected",
    }
    assert rows[2].reason == "duplicate" and rows[4].reason == "not JSON"
    assert rows[4].payload == b"not json" and rows[0].payload is None
    assert [rows[o].first_seen for o in (0, 1, 3)] == [True, False, True]
    window = model_input(pa.RecordBatch.from_pylist([rows[1].asDict()]), [])["daily_cycles"][0]
    assert list(window) == [1.25, 0.0, 3.0]


def test_alerts_follow_champion_forecasts_within_the_margin(spark):
    scored = spark.createDataFrame(
        [
            ("forecast", "B1", "C1", dt.date(2024, 3, 2), 29, "champion", None),
            ("forecast", "B1", "C1", dt.date(2024, 3, 3), 27, "champion", None),
            ("forecast", "B1", "C1", dt.date(2024, 3, 3), 5, "shadow", None),
            ("forecast", "B2", "C2", dt.date(2024, 3, 3), None, "champion", None),
            ("reading", "B3", "C1", dt.date(2024, 3, 3), None, None, True),
            ("reading", "B4", "C1", dt.date(2024, 3, 3), None, None, False),
        ],
        "kind string, battery_id string, car_id string, date date, days_to_failure int, "
        "model_role string, first_seen boolean",
    )
    triggers = scored.where(outputs.is_trigger(30, 0))
    day = F.dayofmonth("date").alias("day")
    assertDataFrameEqual(triggers.select(day), [Row(day=2), Row(day=3)])
    assertDataFrameEqual(scored.where(outputs.is_trigger(30, 3)).select(day), [Row(day=3)])
    assert scored.where(outputs.is_trigger(30, 4)).count() == 0
    arrivals = scored.where(outputs.is_arrival()).select("battery_id")
    assertDataFrameEqual(arrivals, [Row(battery_id="B3")])
