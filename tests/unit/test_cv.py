"""Rolling-origin folds: shared calendar origins, who takes part, actuals, and the error paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecasting.cv import (
    CvError,
    model_inputs,
    period_rows,
    rolling_origin_folds,
    score_fold,
    score_forecaster,
)
from models.forecasting.features import MODEL_INPUT_COLUMNS

pytestmark = pytest.mark.unit


def _readings(battery: str, start: str, days: int, level: float) -> pd.DataFrame:
    dates = pd.date_range(start, periods=days, freq="D")
    cycles = level + 0.01 * np.arange(days)  # distinct values, so a misplaced day shows
    return pd.DataFrame(
        {
            "battery_id": battery,
            "date": dates.strftime("%Y-%m-%d"),
            "daily_cycles_used": cycles,
            "lifetime_cycles_used": np.cumsum(cycles),
            "battery_rated_cycles": 500.0,
            "battery_age_days": np.arange(1, days + 1, dtype=float),
        }
    )


@pytest.fixture
def readings() -> pd.DataFrame:
    frames = [
        _readings("A", "2024-01-01", 100, 1.0),  # the whole period
        _readings("B", "2024-01-01", 55, 2.0),  # ends (fails) on day 55
        _readings("C", "2024-03-10", 31, 3.0),  # new battery: starts on day 70
    ]
    frame = pd.concat(frames, ignore_index=True)
    # A parked day of A inside the last fold's horizon: no reading, so no actual.
    return frame[~((frame["battery_id"] == "A") & (frame["date"] == "2024-04-01"))]


def test_folds_share_calendar_origins_a_horizon_apart(readings: pd.DataFrame) -> None:
    folds = rolling_origin_folds(readings, folds=3, horizon_days=10, window_days=20)
    last_day = pd.Timestamp("2024-04-09")  # day 100
    assert [f.origin for f in folds] == [last_day - pd.Timedelta(days=d) for d in (30, 20, 10)]
    assert [f.number for f in folds] == [1, 2, 3]
    for fold in folds:
        assert pd.to_datetime(fold.history["date"]).max() <= fold.origin
        assert fold.actual.shape == (len(fold.inputs), 10)
        assert np.isfinite(fold.mase_scale) and fold.mase_scale > 0
        assert list(model_inputs(fold).columns) == list(MODEL_INPUT_COLUMNS)


def test_who_takes_part_and_what_they_see(readings: pd.DataFrame) -> None:
    first, _, last = rolling_origin_folds(readings, folds=3, horizon_days=10, window_days=20)
    # Fold 1 (origin day 70): B ended on day 55; C starts that day, short of 14 days.
    assert first.inputs["battery_id"].tolist() == ["A"]
    # Fold 3 (origin day 90): C has 21 days of history now.
    assert last.inputs["battery_id"].tolist() == ["A", "C"]
    a, c = last.inputs.iloc[0], last.inputs.iloc[1]
    assert len(a["daily_cycles"]) == len(c["daily_cycles"]) == 20  # C's 21 days capped at 20
    assert a["daily_cycles"][-1] == pytest.approx(1.0 + 0.01 * 89)  # ends on the origin
    # Actuals are the next 10 days; A's parked day (day 92, step 2) has none.
    assert last.actual[0, 0] == pytest.approx(1.0 + 0.01 * 90)
    assert np.isnan(last.actual[0, 1]) and np.isfinite(last.actual[0, 2:]).all()
    steps = last.target_dates()
    assert len(steps) == 20 and steps["date"].iloc[0] == pd.Timestamp("2024-03-31")


def test_score_fold_and_score_forecaster(readings: pd.DataFrame) -> None:
    folds = rolling_origin_folds(readings, folds=2, horizon_days=10, window_days=20)
    perfect = np.nan_to_num(folds[-1].actual)
    assert score_fold(folds[-1], perfect)["nrmse"] == pytest.approx(0.0)
    flat = score_forecaster(lambda rows: np.ones((len(rows), 10)), folds)
    assert set(flat) >= {"nrmse", "mae", "smape", "mase"} and flat["mae"] > 0
    with pytest.raises(CvError, match="shape"):
        score_fold(folds[-1], np.zeros((1, 3)))


def test_series_too_short_for_the_folds(readings: pd.DataFrame) -> None:
    with pytest.raises(CvError, match=r"span 100 days but 4 fold\(s\).*lower --cv or --horizon"):
        rolling_origin_folds(readings, folds=4, horizon_days=30, window_days=20)


def test_no_battery_in_service_at_an_origin() -> None:
    # Two batteries one after the other: at fold 1's origin the first has just ended.
    frame = pd.concat(
        [_readings("A", "2024-01-01", 40, 1.0), _readings("B", "2024-02-10", 40, 1.0)]
    )
    with pytest.raises(CvError, match="No battery is in service"):
        rolling_origin_folds(frame, folds=2, horizon_days=20, window_days=20)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"folds": 0}, "at least 1"),
        ({"horizon_days": 0}, "at least 1"),
        ({"step_days": 0}, "step between fold origins"),
    ],
)
def test_bad_settings(readings: pd.DataFrame, options: dict, message: str) -> None:
    with pytest.raises(CvError, match=message):
        rolling_origin_folds(readings, **options)


def test_no_readings() -> None:
    with pytest.raises(CvError, match="no readings"):
        rolling_origin_folds(_readings("A", "2024-01-01", 10, 1.0).iloc[0:0])


def test_period_rows_cap_the_batteries_with_a_fixed_choice() -> None:
    fleet = pd.concat(
        [_readings(f"B{i:02d}", "2024-01-01", 40, 1.0 + i) for i in range(12)], ignore_index=True
    )
    since, until = pd.Timestamp("2024-01-30"), pd.Timestamp("2024-02-09")
    whole = period_rows(fleet, since, until, window_days=20)
    assert whole.keys["battery_id"].nunique() == 12
    capped = period_rows(fleet, since, until, window_days=20, max_batteries=5)
    again = period_rows(fleet.sample(frac=1.0, random_state=1), since, until, 20, max_batteries=5)
    chosen = set(capped.keys["battery_id"])
    assert len(chosen) == 5 and chosen == set(again.keys["battery_id"])
    # Each chosen battery keeps every one of its readings in the period.
    assert len(capped.keys) == 5 * 10
