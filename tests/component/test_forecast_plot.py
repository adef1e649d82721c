"""`pitstop forecast BATTERY_ID`: from the Delta tables, or a lab CSV with the champion."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from apps.commands.forecast import forecast_command
from apps.training_data import simulated_readings
from core.config import PitstopConfig
from core.contract import contract_to_lab_frame
from models.reporting.forecast_plot import (
    BatteryForecastError,
    forecast_from_readings,
    forecast_from_tables,
    plot_battery_forecast,
    verdict,
    weekly_table,
)

pytestmark = pytest.mark.component

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def battery(days: int = 50, daily: float = 2.0, start_lifetime: float = 400.0) -> pd.DataFrame:
    """One battery's readings: `daily` cycles a day from `start_lifetime` toward 500 rated."""
    dates = pd.date_range("2024-03-01", periods=days)
    used = np.full(days, daily)
    return pd.DataFrame(
        {
            "car_id": "car-7",
            "battery_id": "7",
            "date": dates.strftime("%Y-%m-%d"),
            "battery_age_days": np.arange(days) + 100,
            "number_of_trips": 2,
            "daily_trip_duration": 1.0,
            "daily_cycles_used": used,
            "lifetime_cycles_used": start_lifetime + np.cumsum(used),
            "battery_rated_cycles": 500.0,
        }
    )


def flat_forecast(frame: pd.DataFrame) -> np.ndarray:
    return np.full((len(frame), 30), 2.0)


def test_forecast_from_readings_finds_the_failure_date() -> None:
    result = forecast_from_readings(
        battery(), "7", flat_forecast, window_days=60, model="flat v1", source="test"
    )
    # 400 + 50 * 2 = 500 already: so start lower to cross inside the horizon.
    assert result.lifetime_cycles_used == 500.0 and result.days_to_failure == 0.0
    result = forecast_from_readings(
        battery(start_lifetime=360.0), "7", flat_forecast, window_days=60, model="m", source="t"
    )
    # 460 used, 2 a day: the 20th day after the last reading reaches 500.
    assert result.days_to_failure == 20.0
    assert result.predicted_failure_date == pd.Timestamp("2024-04-19") + pd.Timedelta(days=20)
    assert "Predicted to reach its 500 rated cycles on 2024-05-09" in verdict(result)
    weeks = weekly_table(result)
    assert list(weeks["kind"]) == ["actual"] * 4 + ["forecast"] * 5
    assert weeks["cycles"].iloc[-1] == pytest.approx(4.0)  # the 2-day remainder of 30


def test_unknown_battery_names_some_known_ones() -> None:
    with pytest.raises(BatteryForecastError, match=r"Battery 99 is not in test \(1 batteries"):
        forecast_from_readings(
            battery(), "99", flat_forecast, window_days=60, model="m", source="test"
        )


def forecasts_table(origin: str, forecast: list[float], role: str = "champion") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "battery_id": ["7"],
            "car_id": ["car-7"],
            "date": [dt.date.fromisoformat(origin)],
            "lifetime_cycles_used": [470.0],
            "battery_rated_cycles": [500.0],
            "forecast": [forecast],
            "days_to_failure": [None],
            "predicted_failure_date": [None],
            "model_name": ["battery-cycles-rnn"],
            "model_version": ["3"],
            "model_role": [role],
            "scored_at": [pd.Timestamp("2024-05-01T00:00:00")],
        }
    )


def test_forecast_from_tables_uses_the_latest_champion_row() -> None:
    telemetry = battery(start_lifetime=300.0)
    rows = pd.concat(
        [
            forecasts_table("2024-04-18", [1.0] * 30),
            forecasts_table("2024-04-19", [3.0] * 30),
            forecasts_table("2024-04-19", [9.0] * 30, role="shadow"),
        ]
    )
    result = forecast_from_tables(telemetry, rows, "7", source="lake")
    assert result is not None and result.model == "battery-cycles-rnn v3"
    assert result.days_to_failure == 10.0  # 470 + 3 a day reaches 500 on day 10
    assert forecast_from_tables(telemetry, rows.iloc[0:0], "7", source="lake") is None


def test_plot_is_a_png(tmp_path: Path) -> None:
    result = forecast_from_readings(
        battery(start_lifetime=360.0), "7", flat_forecast, window_days=60, model="m", source="t"
    )
    path = tmp_path / "plot.png"
    plot_battery_forecast(result).savefig(path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def command_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(forecast_command)
    return app


def test_command_reads_the_delta_tables(tmp_path: Path, monkeypatch) -> None:
    from deltalake import write_deltalake

    lake = tmp_path / "lake"
    telemetry = battery(start_lifetime=300.0).assign(
        date=lambda f: pd.to_datetime(f["date"]).dt.date
    )
    write_deltalake(str(lake / "telemetry"), telemetry)
    write_deltalake(str(lake / "battery_forecasts"), forecasts_table("2024-04-19", [3.0] * 30))
    monkeypatch.setenv("PITSTOP__STORAGE__LAKE", str(lake))
    out = tmp_path / "b7.png"
    runner = CliRunner()
    shown = runner.invoke(command_app(), ["7", "--out", str(out)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "Forecast by battery-cycles-rnn v3" in shown.output
    assert "Predicted to reach its 500 rated cycles on 2024-04-29" in shown.output
    assert out.read_bytes()[:8] == PNG_MAGIC
    unknown = runner.invoke(command_app(), ["nope"], env={"COLUMNS": "200"})
    assert unknown.exit_code == 1
    assert "Battery nope is not in the Delta tables" in unknown.output


def test_command_without_telemetry_says_what_to_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PITSTOP__STORAGE__LAKE", str(tmp_path / "empty-lake"))
    shown = CliRunner().invoke(command_app(), ["7"], env={"COLUMNS": "200"})
    assert shown.exit_code == 1
    assert "There is no telemetry" in shown.output and "--data" in shown.output


def test_command_forecasts_a_lab_csv_with_the_champion(
    trained_config: PitstopConfig, tmp_path: Path, monkeypatch
) -> None:
    readings = simulated_readings(batteries=3, days=90, seed=11)
    csv = tmp_path / "daily-battery-time-series-v2.csv"
    contract_to_lab_frame(readings).to_csv(csv)
    monkeypatch.setenv("PITSTOP__MLFLOW__TRACKING_URI", trained_config.mlflow.tracking_uri)
    some_battery = str(readings["battery_id"].iloc[0])
    out = tmp_path / "plot.png"
    shown = CliRunner().invoke(
        command_app(),
        [some_battery, "--data", str(csv), "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert shown.exit_code == 0, shown.output
    assert f"Battery {some_battery}" in shown.output
    assert "Forecast by battery-cycles-rnn v" in shown.output
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_command_forecasts_delta_telemetry_without_stored_forecast(
    trained_config: PitstopConfig, tmp_path: Path, monkeypatch
) -> None:
    from deltalake import write_deltalake

    readings = simulated_readings(batteries=2, days=60, seed=5)
    lake = tmp_path / "lake"
    write_deltalake(str(lake / "telemetry"), readings.assign(date=pd.to_datetime(readings["date"])))
    monkeypatch.setenv("PITSTOP__STORAGE__LAKE", str(lake))
    monkeypatch.setenv("PITSTOP__MLFLOW__TRACKING_URI", trained_config.mlflow.tracking_uri)
    some_battery = str(readings["battery_id"].iloc[-1])
    out = tmp_path / "plot.png"
    shown = CliRunner().invoke(
        command_app(), [some_battery, "--out", str(out)], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert "Forecast by battery-cycles-rnn v" in shown.output
    assert out.read_bytes()[:8] == PNG_MAGIC
