"""Failure labels read from the readings, risk calibration, the alert threshold, ECE."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.forecasting.risk import (
    RiskCalibrator,
    RiskError,
    alert_outcomes,
    calibrate_risk,
    certifying_alerts,
    choose_threshold,
    expected_calibration_error,
    failure_dates,
    first_alert_curve,
    first_alerts,
    reading_labels,
    settle_threshold,
)

pytestmark = pytest.mark.unit

START = pd.Timestamp("2024-01-01")


def _battery(battery_id: str, days: int, use: float, rated: float, lifetime: float = 0.0):
    dates = pd.date_range(START, periods=days, freq="D")
    life = lifetime + use * np.arange(1, days + 1)
    return pd.DataFrame(
        {
            "battery_id": battery_id,
            "date": dates,
            "daily_cycles_used": use,
            "lifetime_cycles_used": life,
            "battery_rated_cycles": rated,
        }
    )


@pytest.fixture
def fleet() -> pd.DataFrame:
    return pd.concat(
        [
            _battery("reaches", 50, 1.0, 40.0),  # lifetime 40 on day 40 (2024-02-09)
            _battery("silent", 39, 1.0, 40.5),  # stops 0.5 short, the fleet goes on: failed
            _battery("weak", 20, 1.0, 500.0),  # leaves far from its rating: not a wear failure
            _battery("running", 90, 1.0, 1000.0),  # never fails; the fleet's last day is 90
            _battery("late", 85, 1.0, 85.5),  # stops 5 days before the fleet does: too soon
        ],
        ignore_index=True,
    )


def test_failure_dates_come_from_the_readings(fleet: pd.DataFrame) -> None:
    dates = failure_dates(fleet)
    assert dates["reaches"] == START + pd.Timedelta(days=39)
    assert dates["silent"] == START + pd.Timedelta(days=39)  # the day after its last reading
    assert dates[["weak", "running", "late"]].isna().all()
    with pytest.raises(RiskError, match="battery_rated_cycles"):
        failure_dates(fleet.drop(columns="battery_rated_cycles"))


def test_reading_labels_are_known_only_when_the_data_can_tell(fleet: pd.DataFrame) -> None:
    failures = failure_dates(fleet)
    end = pd.to_datetime(fleet["date"]).max()
    rows = pd.DataFrame(
        {
            "battery_id": ["reaches", "reaches", "running", "running"],
            "date": [START + pd.Timedelta(days=d) for d in (5, 20, 10, 70)],
        }
    )
    labels = reading_labels(rows, failures, end, within_days=30)
    assert labels[0] == 0.0 and labels[1] == 1.0  # 34 and 19 days before failing
    assert labels[2] == 0.0 and np.isnan(labels[3])  # 30 days unseen after day 70


def test_platt_keeps_the_order_and_isotonic_follows_the_frequencies() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 4000)
    label = (rng.uniform(0, 1, 4000) < raw**2).astype(float)
    platt = RiskCalibrator.fit(raw, label, "platt")
    grid = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(platt.apply(grid)) > 0)
    iso = RiskCalibrator.fit(raw, label, "isotonic")
    assert expected_calibration_error(iso.apply(raw), label) < 0.02
    assert np.isnan(platt.apply(np.array([np.nan]))[0])
    with pytest.raises(RiskError, match="no failure"):
        RiskCalibrator.fit(raw, np.zeros_like(raw))
    with pytest.raises(RiskError, match="Unknown calibration"):
        RiskCalibrator.fit(raw, label, "magic")


def test_the_threshold_is_the_lowest_that_reaches_the_precision(fleet: pd.DataFrame) -> None:
    failures = failure_dates(fleet)
    end = pd.to_datetime(fleet["date"]).max()
    # "reaches" is risky from day 15 (24 days before failing), "running" peaks at 0.6 on
    # day 20 (a false alarm at any threshold up to 0.6).
    rows = fleet[fleet["battery_id"].isin(["reaches", "running"])].copy()
    day = (pd.to_datetime(rows["date"]) - START).dt.days
    rows["risk"] = np.where(
        rows["battery_id"] == "reaches",
        np.where(day >= 15, 0.8, 0.1),
        np.where(day == 20, 0.6, 0.05),
    )
    curve = first_alert_curve(rows, failures, end, 30)
    assert curve["threshold"].tolist() == [0.05, 0.1, 0.6, 0.8]
    assert curve.set_index("threshold").loc[0.6, "precision"] == 0.5
    threshold, precision, reached = choose_threshold(curve, 0.97)
    assert (threshold, precision, reached) == (0.8, 1.0, True)
    alerts = first_alerts(rows, rows["risk"].to_numpy() >= threshold)
    scores = alert_outcomes(alerts, rows, failures, end, 30)
    assert scores["recall"] == 1.0 and scores["precision"] == 1.0
    assert scores["median_lead_days"] == 24.0


def test_calibrate_risk_reports_what_it_fitted_on(fleet: pd.DataFrame) -> None:
    failures = failure_dates(fleet)
    end = pd.to_datetime(fleet["date"]).max()
    remaining = fleet["battery_rated_cycles"] - fleet["lifetime_cycles_used"]
    table = fleet[["battery_id", "date"]].assign(raw_risk=np.clip(1 - remaining / 60, 0, 1))
    result = calibrate_risk(table, failures, end, target_precision=0.9, within_days=30)
    assert result.batteries_failing == 2 and result.positives > 0
    assert 0 <= result.threshold <= 1 and result.reached
    assert result.params()["risk_calibration"] == "platt"
    assert len(result.reliability) == 10 and result.reliability["rows"].sum() == result.rows


def test_ece_of_a_perfect_and_of_a_wrong_forecaster() -> None:
    label = np.array([0, 0, 0, 1] * 25, dtype=float)
    assert expected_calibration_error(np.full(100, 0.25), label) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(100, 0.75), label) == pytest.approx(0.5)


def test_halves_deal_the_failing_batteries_to_both_sides() -> None:
    from models.forecasting.calibration import halves

    ids = pd.Series([f"B{i}" for i in range(40) for _ in range(3)])
    failing = ids.isin(["B3", "B17"]).to_numpy() & (np.arange(len(ids)) % 3 == 2)
    plain = halves(ids)
    dealt = halves(ids, failing=failing)
    sides = {bool(dealt[ids.to_numpy() == b][0]) for b in ("B3", "B17")}
    assert sides == {True, False}
    # One battery per side throughout, and the others keep their hash side.
    assert all(len(set(dealt[ids.to_numpy() == b])) == 1 for b in ids.unique())
    others = ~ids.isin(["B3", "B17"]).to_numpy()
    assert (dealt[others] == plain[others]).all()


def test_a_threshold_too_few_alerts_can_show_is_raised_to_the_target() -> None:
    assert certifying_alerts(0.97) == 99 and certifying_alerts(0.8) == 14

    def curve(alerts: int) -> pd.DataFrame:
        # Every first alert right from 0.78 up; as many false ones again below it.
        return pd.DataFrame(
            {
                "threshold": [0.5, 0.78, 0.9],
                "alerts": [2 * alerts, alerts, alerts - 2],
                "verifiable": [2 * alerts, alerts, alerts - 2],
                "right": [alerts, alerts, alerts - 2],
            }
        ).assign(precision=lambda c: c["right"] / c["verifiable"])

    # 12 alerts without a false one (the session's test model): luck as much as skill.
    threshold, precision, reached, verifiable, empirical = settle_threshold(curve(12), 0.97)
    assert (empirical, precision, reached, verifiable) == (0.78, 1.0, True, 12)
    assert threshold == 0.97
    # 120 of them show the target: the period's own choice stands.
    assert settle_threshold(curve(120), 0.97)[0] == 0.78
