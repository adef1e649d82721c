"""The battery state step (the JVM transformWithState) across real micro-batches.

Each list of readings below is one micro-batch of a stream (a file source, one file per
trigger); the state carries each battery's history from one to the next.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.forecasting.features import HEALTH_COLUMNS, build_history_windows
from streaming.battery.history import NEW, REJECTED, STORED, HistoryRules
from streaming.battery.readings import battery_history, parse_telemetry
from streaming.battery.scoring import model_input

pytestmark = pytest.mark.component

RULES = HistoryRules(window_days=3, late_after_days=2)


def message(day: str, offset: int, cycles: float = 1.0, battery: str = "B1") -> dict:
    body = {
        "schema_version": 1,
        "car_id": "C1",
        "battery_id": battery,
        "date": day,
        "battery_age_days": 10,
        "number_of_trips": 1,
        "daily_trip_duration": 1.0,
        "daily_cycles_used": cycles,
        "lifetime_cycles_used": 100.0,
        "battery_rated_cycles": 500.0,
        "resting_voltage": float(offset),
    }
    return {"value": json.dumps(body).encode(), "offset": offset}


def run_batches(spark, tmp_path: Path, batches: list[list[dict]], rules: HistoryRules) -> list:
    """Each batch through the state step as one micro-batch; the decided rows of each."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index, batch in enumerate(batches):
        table = pa.table(
            {
                "key": pa.array([None] * len(batch), pa.binary()),
                "value": pa.array([m["value"] for m in batch], pa.binary()),
                "topic": ["t"] * len(batch),
                "partition": pa.array([0] * len(batch), pa.int32()),
                "offset": pa.array([m["offset"] for m in batch], pa.int64()),
                "timestamp": pa.array([dt.datetime(2024, 3, 1)] * len(batch), pa.timestamp("us")),
            }
        )
        path = folder / f"{index:04d}.parquet"
        pq.write_table(table, path)
        os.utime(path, (1_700_000_000 + index, 1_700_000_000 + index))  # the source's order
    source = (
        spark.readStream.schema(spark.read.parquet(str(folder)).schema)
        .option("maxFilesPerTrigger", 1)
        .parquet(str(folder))
    )
    decided = battery_history(parse_telemetry(source), rules, ttl_days=90)
    seen: dict[int, list] = {}
    (
        decided.writeStream.foreachBatch(lambda frame, i: seen.__setitem__(i, frame.collect()))
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
        .awaitTermination()
    )
    return [sorted(seen[i], key=lambda r: r.offset) for i in sorted(seen)]


def cycles_windows(rows) -> dict[int, list[float]]:
    """offset -> the daily cycles window of each new reading."""
    new = [r for r in rows if r.fate == NEW]
    if not new:
        return {}
    batch = pa.RecordBatch.from_pylist([r.asDict() for r in new])
    frame = model_input(batch, ["resting_voltage_history"])
    return {r.offset: list(w) for r, w in zip(new, frame["daily_cycles"], strict=True)}


def test_windows_fill_parked_days_and_end_on_each_new_reading(spark, tmp_path):
    (rows,) = run_batches(
        spark, tmp_path, [[message(f"2024-03-0{d}", d, float(d)) for d in (1, 2, 4, 5)]], RULES
    )
    assert [r.fate for r in rows] == [NEW] * 4
    got = cycles_windows(rows)
    assert got[4] == [2.0, 0.0, 4.0]  # 3 March: parked, 0 cycles
    assert got[5] == [0.0, 4.0, 5.0]
    assert got[1] == [1.0]  # the battery's first day: a shorter window, as in training
    # Health signals ride along day by day, NaN where none was sent.
    frame = model_input(pa.RecordBatch.from_pylist([rows[2].asDict()]), ["resting_voltage_history"])
    resting = frame["resting_voltage_history"][0]
    assert resting[[0, 2]].tolist() == [2.0, 4.0] and np.isnan(resting[1])
    assert [r.first_seen for r in rows] == [True, False, False, False]


def test_a_later_batch_decides_against_what_earlier_ones_stored(spark, tmp_path):
    first = [message("2024-03-10", 1), message("2024-03-08", 2)]
    second = [
        message("2024-03-07", 3),  # more than 2 days before 10 March: late
        message("2024-03-08", 4),  # a stored date from another record: duplicate
        message("2024-03-08", 2),  # the very record stored before: already stored
        message("2024-03-12", 6),
        message("2024-03-12", 5),  # the lower offset wins a date sent twice
        message("2024-03-09", 7),  # out of order but on time: new
    ]
    _, rows = run_batches(spark, tmp_path, [first, second], RULES)
    fates = {r.offset: (r.fate, r.reason) for r in rows}
    assert fates == {
        2: (STORED, None),
        3: (
            REJECTED,
            "late: 2024-03-07 is more than 2 days before the battery's latest reading 2024-03-10",
        ),
        4: (REJECTED, "duplicate"),
        5: (NEW, None),
        6: (REJECTED, "duplicate"),
        7: (NEW, None),
    }
    assert not any(r.first_seen for r in rows)
    # The out-of-order reading's window starts at the battery's first day (8 March).
    assert cycles_windows(rows)[7] == [1.0, 1.0]


def test_a_trimmed_state_still_counts_parked_days_from_the_first_day(spark, tmp_path):
    batches = [
        [message(f"2024-03-0{d}", d) for d in (1, 2, 3, 4)],
        # 9 March pushes every earlier day out of the state (2 + 3 days are kept) ...
        [message("2024-03-09", 9, 5.0)],
        # ... yet these windows still start 2 days back, with 5 and 6 March parked.
        [message("2024-03-08", 8, 2.0), message("2024-03-07", 7, 3.0)],
    ]
    *_, rows = run_batches(spark, tmp_path, batches, RULES)
    windows = cycles_windows(rows)
    assert windows[7] == [0.0, 0.0, 3.0]
    assert windows[8] == [0.0, 3.0, 2.0]


def test_stream_windows_equal_the_training_windows_across_batches(spark, tmp_path):
    from apps.training_data import simulated_readings

    readings = simulated_readings(batteries=3, days=120, seed=4)
    readings = readings.sort_values(["date", "battery_id"], ignore_index=True)
    days = sorted(readings["date"].unique())
    batches = []
    for start in range(0, len(days), 9):  # micro-batches of 9 days of the whole fleet
        chunk = readings[readings["date"].isin(days[start : start + 9])]
        batches.append(
            [
                message(r.date, int(i), r.daily_cycles_used, r.battery_id)
                for i, r in zip(chunk.index, chunk.itertuples(), strict=True)
            ]
        )
    decided = [
        row
        for batch in run_batches(spark, tmp_path, batches, HistoryRules(60, 14))
        for row in batch
    ]
    got = {}
    rejected = [(r.battery_id, r.date, r.reason) for r in decided if r.fate != NEW]
    assert not rejected
    for row in decided:
        got[(row.battery_id, row.date)] = cycles_windows([row])[row.offset]
    expected = build_history_windows(readings, 60)
    assert len(got) == len(expected) == len(readings)
    for row in expected.itertuples():
        np.testing.assert_array_equal(got[(row.battery_id, row.date.date())], row.daily_cycles)


def test_windows_carry_every_health_signal_the_readings_had(spark, tmp_path):
    (rows,) = run_batches(
        spark, tmp_path, [[message("2024-03-01", 1), message("2024-03-02", 2)]], RULES
    )
    names = [f"{s}_history" for s in HEALTH_COLUMNS]
    frame = model_input(pa.RecordBatch.from_pylist([r.asDict() for r in rows]), names)
    assert list(frame.columns[-len(names) :]) == names
    assert np.isnan(frame["ambient_temp_c_history"][1]).all()  # never sent: missing values
    assert pd.Series(frame["resting_voltage_history"][1]).tolist() == [1.0, 2.0]
