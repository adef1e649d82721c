"""The sweep's exit criteria, ranking and inputs, with stand-in candidates of known quality."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from apps.training_data import simulated_readings
from models.forecasting.automl import (
    DONE,
    FAILED,
    SKIPPED,
    STOPPED,
    AutomlError,
    leaderboard,
    parse_duration,
    prepare_readings,
    run_sweep,
)
from models.forecasting.candidates import Candidate, FitRequest
from models.forecasting.cv import rolling_origin_folds
from models.forecasting.pyfunc import ForecastPythonModel

pytestmark = pytest.mark.unit


class _Constant(ForecastPythonModel):
    """Forecasts each window's mean times `factor`: 1.0 is decent, far from it is poor."""

    def __init__(self, factor: float, delay_s: float = 0.0) -> None:
        self.factor, self.delay_s = factor, delay_s

    def forecast(self, frame: pd.DataFrame) -> np.ndarray:
        time.sleep(self.delay_s)
        level = np.array([np.nanmean(h) for h in frame["daily_cycles"]])
        return np.repeat(level[:, None] * self.factor, self.horizon_days, axis=1)


def _candidate(name: str, factor: float, baseline: bool = False, **kw: float) -> Candidate:
    def fit(request: FitRequest) -> ForecastPythonModel:
        if factor < 0:
            raise RuntimeError("this candidate always breaks")
        time.sleep(kw.get("fit_s", 0.0))
        return _Constant(factor, kw.get("delay_s", 0.0))

    return Candidate(name, "test", f"mean x {factor}", fit, {"factor": factor}, baseline)


@pytest.fixture(scope="module")
def folds() -> list:
    return rolling_origin_folds(simulated_readings(batteries=5, days=80, seed=2), 2, 30, 60)


def test_all_candidates_run_and_are_ranked_by_nrmse(folds: list) -> None:
    candidates = [_candidate("poor", 2.0, baseline=True), _candidate("good", 1.0)]
    seen: list[tuple[str, int]] = []
    sweep = run_sweep(
        candidates,
        folds,
        time_budget_s=None,
        metric_threshold=None,
        on_fold=lambda result, fold: seen.append((result.name, fold)),
    )
    assert seen == [("poor", 1), ("poor", 2), ("good", 1), ("good", 2)]
    assert sweep.stopped_reason == "all candidates ran" and sweep.best().name == "good"
    board = leaderboard(sweep)
    assert board["candidate"].tolist() == ["good", "poor"]
    assert board["rank"].tolist() == [1, 2] and (board["status"] == DONE).all()
    assert (board["folds_done"] == 2).all() and board["predict_s_per_1k"].notna().all()
    good = sweep.results[1]
    assert len(good.fold_metrics) == 2 and good.last_forecast.shape == folds[-1].actual.shape


def test_threshold_stops_after_the_baselines(folds: list) -> None:
    candidates = [
        _candidate("base_a", 1.0, baseline=True),
        _candidate("base_b", 3.0, baseline=True),  # runs although base_a already met it
        _candidate("model", 1.0),
    ]
    sweep = run_sweep(candidates, folds, time_budget_s=None, metric_threshold=10.0)
    statuses = [r.status for r in sweep.results]
    assert statuses == [DONE, DONE, SKIPPED]
    assert sweep.stopped_reason == "metric threshold 10 reached"
    assert sweep.results[2].reason == sweep.stopped_reason
    # An unreachable threshold lets everything run.
    sweep = run_sweep(candidates, folds, time_budget_s=None, metric_threshold=1e-9)
    assert [r.status for r in sweep.results] == [DONE, DONE, DONE]


def test_time_budget_stops_a_slow_candidate_and_skips_the_rest(folds: list) -> None:
    candidates = [
        _candidate("base", 1.0, baseline=True),
        _candidate("slow", 1.0, delay_s=0.4),
        _candidate("later", 1.0),
    ]
    started = time.monotonic()
    sweep = run_sweep(candidates, folds, time_budget_s=0.3, metric_threshold=None)
    assert time.monotonic() - started < 2.0
    assert [r.status for r in sweep.results] == [DONE, STOPPED, SKIPPED]
    assert sweep.stopped_reason == "time budget spent"
    board = leaderboard(sweep)
    assert board["rank"].tolist()[0] == 1 and board["rank"].isna().sum() == 2
    assert sweep.best().name == "base"  # an unfinished candidate is never the best


def test_a_slow_candidate_spends_only_its_share_of_the_budget(folds: list) -> None:
    """Two contenders share a 1-second budget: the slow one (0.4 s a fold) stops at its half,
    and the one after it still runs and is ranked."""
    candidates = [
        _candidate("base", 2.0, baseline=True),
        _candidate("slow", 1.0, delay_s=0.4),
        _candidate("later", 1.0),
    ]
    sweep = run_sweep(candidates, folds, time_budget_s=1.0, metric_threshold=None)
    assert [r.status for r in sweep.results] == [DONE, STOPPED, DONE]
    assert sweep.stopped_reason == "all candidates ran; 1 stopped at their share of the time budget"
    assert sweep.best().name == "later"


def test_a_failing_candidate_is_recorded_and_the_sweep_goes_on(folds: list) -> None:
    sweep = run_sweep(
        [_candidate("broken", -1.0), _candidate("fine", 1.0)],
        folds,
        time_budget_s=None,
        metric_threshold=None,
    )
    broken = sweep.results[0]
    assert broken.status == FAILED and "always breaks" in broken.reason
    assert sweep.best().name == "fine"
    with pytest.raises(AutomlError, match="No candidate finished"):
        run_sweep(
            [_candidate("broken", -1.0)], folds, time_budget_s=None, metric_threshold=None
        ).best()


def test_sweep_needs_candidates_and_folds(folds: list) -> None:
    with pytest.raises(AutomlError, match="no candidates"):
        run_sweep([], folds, time_budget_s=None, metric_threshold=None)
    with pytest.raises(AutomlError, match="no cross-validation folds"):
        run_sweep([_candidate("a", 1.0)], [], time_budget_s=None, metric_threshold=None)


@pytest.mark.parametrize(
    ("text", "seconds"), [("600", 600.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten minutes", "0", "-5m", ""])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(AutomlError, match="Time budget"):
        parse_duration(text)


def test_prepare_readings_maps_columns_and_names_what_is_missing() -> None:
    frame = pd.DataFrame(
        {"when": ["2024-01-01"], "unit": [7], "use": ["1.5"], "daily_cycles_used": [9.0]}
    )
    out = prepare_readings(frame, "use", "when", "unit")
    assert out[["battery_id", "date", "daily_cycles_used"]].iloc[0].tolist() == [
        "7",
        "2024-01-01",
        1.5,
    ]
    with pytest.raises(AutomlError, match="no column\\(s\\) cycles; choose --target"):
        prepare_readings(frame, "cycles", "when", "unit")
