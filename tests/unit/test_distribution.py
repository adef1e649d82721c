"""Forecast distributions: the contract's output frame, and the risk read from quantiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecasting.distribution import (
    CUM_LEVELS,
    DAILY_LEVELS,
    OUTPUT_COLUMNS,
    DistributionError,
    ForecastDistribution,
    exceedance_probability,
    monotone_cumulative,
    raw_failure_risk,
)

pytestmark = pytest.mark.unit

# A running total whose quantiles at CUM_LEVELS are 10, 12, ... 30 cycles.
TOTALS = np.array([[10.0, 12.0, 14.0, 17.0, 20.0, 23.0, 26.0, 28.0, 30.0]])


def _distribution(rows: int = 2, horizon: int = 4) -> ForecastDistribution:
    point = np.arange(rows * horizon, dtype=float).reshape(rows, horizon)
    daily = point[:, :, None] + np.array([-0.5, 0.0, 0.5])
    totals = np.cumsum(point, axis=1)[:, :, None] + np.linspace(-2, 2, len(CUM_LEVELS))
    return ForecastDistribution(
        point, daily=daily, cumulative=totals, risk=np.linspace(0.1, 0.9, rows)
    )


def test_exceedance_probability_reads_the_levels_at_the_quantiles() -> None:
    for q, level in zip(TOTALS[0], CUM_LEVELS, strict=True):
        assert exceedance_probability(TOTALS, np.array([q]))[0] == pytest.approx(1 - level)


def test_exceedance_probability_falls_as_more_cycles_remain() -> None:
    remaining = np.linspace(-5, 80, 200)
    risk = exceedance_probability(np.repeat(TOTALS, len(remaining), axis=0), remaining)
    assert np.all(np.diff(risk) <= 1e-12)
    assert risk[remaining <= 0].min() == 1.0
    # The exponential tail keeps ordering far beyond the highest quantile, and reaches ~0.
    assert 0 < risk[remaining > 30][0] < 0.02 and risk[-1] < 1e-6


def test_exceedance_probability_of_nan_quantiles_is_nan() -> None:
    quantiles = np.vstack([TOTALS, np.full_like(TOTALS, np.nan)])
    risk = exceedance_probability(quantiles, np.array([20.0, 20.0]))
    assert risk[0] == pytest.approx(0.5) and np.isnan(risk[1])
    with pytest.raises(DistributionError, match="levels"):
        exceedance_probability(TOTALS[:, :3], np.array([1.0]))


def test_raw_failure_risk_reads_the_alert_day() -> None:
    cumulative = np.repeat(TOTALS[:, None, :], 30, axis=1) * (np.arange(1, 31) / 30)[:, None]
    risk = raw_failure_risk(cumulative, np.array([480.0]), np.array([500.0]), within_days=30)
    assert risk[0] == pytest.approx(0.5)  # 20 cycles left: the total's median at day 30
    early = raw_failure_risk(cumulative, np.array([480.0]), np.array([500.0]), within_days=15)
    assert early[0] < 0.02


def test_contract_frame_round_trips() -> None:
    dist = _distribution()
    frame = dist.to_frame()
    assert list(frame.columns) == list(OUTPUT_COLUMNS)
    assert frame["daily_q10"][0].tolist() == (dist.point[0] - 0.5).tolist()
    back = ForecastDistribution.from_output(frame)
    np.testing.assert_allclose(back.point, dist.point)
    np.testing.assert_allclose(back.shown_cumulative(), dist.shown_cumulative())
    np.testing.assert_allclose(back.risk, dist.risk)


def test_a_point_forecast_alone_has_null_quantiles_and_risk() -> None:
    legacy = np.ones((3, 5))  # what versions registered before quantiles return
    dist = ForecastDistribution.from_output(legacy)
    assert dist.daily is None and dist.cumulative is None and dist.risk is None
    frame = dist.to_frame()
    assert frame["cum_q50"].isna().all() and frame["failure_risk"].isna().all()
    assert ForecastDistribution.from_output(frame).risk is None


def test_shapes_are_checked() -> None:
    with pytest.raises(DistributionError, match="rows, horizon"):
        ForecastDistribution(np.ones(3))
    with pytest.raises(DistributionError, match="daily quantiles"):
        ForecastDistribution(np.ones((2, 3)), daily=np.ones((2, 3, 2)))
    with pytest.raises(DistributionError, match="expected the contract frame"):
        ForecastDistribution.from_output(pd.DataFrame({"x": [1]}))
    assert len(DAILY_LEVELS) == 3


def test_cumulative_quantiles_never_fall_over_the_horizon() -> None:
    totals = np.array([[[1.0, 2.0], [0.5, 1.5], [3.0, 4.0]]])
    assert monotone_cumulative(totals)[0, :, 0].tolist() == [1.0, 1.0, 3.0]
