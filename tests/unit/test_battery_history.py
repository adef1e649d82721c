"""The battery state's decisions and windows, without Spark (streaming.battery.history)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from models.features import HEALTH_COLUMNS, build_history_windows
from streaming.battery.history import (
    NEW,
    REJECTED,
    STORED,
    HistoryRules,
    Reading,
    advance_history,
    day_number,
    decode_history,
    encode_history,
)

pytestmark = pytest.mark.unit

RULES = HistoryRules(window_days=3, late_after_days=2)


def reading(day: str, offset: int, cycles: float = 1.0, source: int | None = None) -> Reading:
    date = dt.date.fromisoformat(day)
    health = tuple(float(offset) if s == "resting_voltage" else None for s in HEALTH_COLUMNS)
    return Reading(day_number(date), source or offset, ("t", 0, offset), cycles, health)


def windows(outcomes) -> list[list[float]]:
    return [np.frombuffer(o.window).tolist() for o in outcomes if o.fate == NEW]


def test_windows_fill_parked_days_and_end_on_each_new_reading():
    batch = [reading(f"2024-03-0{d}", d, float(d)) for d in (1, 2, 4, 5)]
    history, outcomes = advance_history(None, batch, RULES)
    assert [o.fate for o in outcomes] == [NEW] * 4
    got = dict(zip((1, 2, 4, 5), windows(outcomes), strict=True))
    assert got[4] == [2.0, 0.0, 4.0]  # 3 March: parked, 0 cycles
    assert got[5] == [0.0, 4.0, 5.0]
    assert got[1] == [1.0]  # the battery's first day: a shorter window, as in training
    # Health signals ride along day by day, NaN where none was sent.
    health = np.frombuffer(outcomes[2].health).reshape(len(HEALTH_COLUMNS), 3)
    resting = health[HEALTH_COLUMNS.index("resting_voltage")]
    assert resting[[0, 2]].tolist() == [2.0, 4.0] and np.isnan(resting[1])
    assert [o.first_seen for o in outcomes] == [True, False, False, False]
    # Kept: the last window + lateness days only.
    assert history.days["day"].tolist() == [day_number(dt.date(2024, 3, d)) for d in (1, 2, 4, 5)]


def test_a_later_batch_decides_against_what_earlier_ones_stored():
    history, _ = advance_history(None, [reading("2024-03-10", 1), reading("2024-03-08", 2)], RULES)
    history, outcomes = advance_history(
        history,
        [
            reading("2024-03-07", 3),  # more than 2 days before 10 March: late
            reading("2024-03-08", 4),  # a stored date from another record: duplicate
            reading("2024-03-08", 2),  # the very record stored before: already stored
            reading("2024-03-12", 6),
            reading("2024-03-12", 5),  # the lower offset wins a date sent twice
            reading("2024-03-09", 7),  # out of order but on time: new
        ],
        RULES,
    )
    fates = [(o.fate, o.reason) for o in outcomes]
    assert fates == [
        (
            REJECTED,
            "late: 2024-03-07 is more than 2 days before the battery's latest reading 2024-03-10",
        ),
        (REJECTED, "duplicate"),
        (STORED, None),
        (REJECTED, "duplicate"),
        (NEW, None),
        (NEW, None),
    ]
    assert not any(o.first_seen for o in outcomes)
    # The out-of-order reading's window starts at the battery's first day (8 March).
    assert np.frombuffer(outcomes[5].window).tolist() == [1.0, 1.0]
    assert history.days["day"].min() == day_number(dt.date(2024, 3, 8))


def test_a_trimmed_state_still_counts_parked_days_from_the_first_day():
    history, _ = advance_history(None, [reading(f"2024-03-0{d}", d) for d in (1, 2, 3, 4)], RULES)
    # 2 March is on time against 4 March (2 days late allowed) but stored already; 9 March
    # pushes every earlier day out of the state, yet windows still start before it.
    history, outcomes = advance_history(
        history, [reading("2024-03-09", 9, 5.0), reading("2024-03-02", 12, 7.0)], RULES
    )
    assert [o.fate for o in outcomes] == [NEW, REJECTED]  # 2 March is stored already
    history, outcomes = advance_history(
        history, [reading("2024-03-08", 8, 2.0), reading("2024-03-07", 7, 3.0)], RULES
    )
    assert np.frombuffer(outcomes[1].window).tolist() == [0.0, 0.0, 3.0]
    assert np.frombuffer(outcomes[0].window).tolist() == [0.0, 3.0, 2.0]
    assert history.days["day"].min() == day_number(dt.date(2024, 3, 7))


def test_nothing_new_leaves_the_state_untouched():
    history, _ = advance_history(None, [reading("2024-03-10", 1)], RULES)
    again, outcomes = advance_history(history, [reading("2024-03-10", 9)], RULES)
    assert again is None
    assert [o.fate for o in outcomes] == [REJECTED]


def test_state_values_round_trip_and_refuse_an_unknown_layout():
    history, _ = advance_history(None, [reading("2024-03-01", 1), reading("2024-03-03", 2)], RULES)
    back = decode_history(encode_history(history))
    assert back.first_day == history.first_day
    assert back.days.tobytes() == history.days.tobytes()
    assert decode_history(None) is None
    layout, first_day, days = encode_history(history)
    with pytest.raises(ValueError, match="layout 99"):
        decode_history((99, first_day, days))


def test_stream_windows_equal_the_training_windows_across_batches():
    from models.data import simulated_readings

    rules = HistoryRules(window_days=60, late_after_days=14)
    readings = simulated_readings(batteries=3, days=150, seed=4)
    readings = readings.assign(date=pd.to_datetime(readings["date"]).dt.date)
    readings = readings.sort_values(["battery_id", "date"], ignore_index=True)
    expected = build_history_windows(readings, 60)
    got: dict[tuple, list[float]] = {}
    for battery, rows in readings.groupby("battery_id"):
        history = None
        # Micro-batches of 9 days: the state carries each battery's history between them.
        for _, chunk in rows.groupby(np.arange(len(rows)) // 9):
            batch = [
                Reading(day_number(r.date), i, ("t", 0, i), r.daily_cycles_used, (None,) * 4)
                for i, r in zip(chunk.index, chunk.itertuples(), strict=True)
            ]
            advanced, outcomes = advance_history(history, batch, rules)
            history = advanced or history
            for r, outcome in zip(chunk.itertuples(), outcomes, strict=True):
                got[(battery, r.date)] = np.frombuffer(outcome.window).tolist()
    assert len(got) == len(expected)
    for row in expected.itertuples():
        key = (row.battery_id, row.date.date())
        np.testing.assert_array_equal(got[key], row.daily_cycles)
