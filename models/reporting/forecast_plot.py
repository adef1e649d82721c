"""One battery's recent use, its 30-day forecast and the date it is predicted to reach its
rated cycles, as a `BatteryForecast`, a weekly table and a figure.

Pure: the forecast comes either from the stream's stored `battery_forecasts` rows or from a
contract forecaster passed in; `pitstop forecast` (apps.commands.forecast) reads the data,
calls these and prints.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import PitstopError
from models.forecasting.features import (
    build_history_windows,
    daily_series,
    forecast_failure_date,
    model_input_columns,
)

log = logging.getLogger(__name__)

HISTORY_DAYS = 90


class BatteryForecastError(PitstopError, LookupError):
    """The battery or its data cannot be found; the message says where to look instead."""


@dataclass(frozen=True)
class BatteryForecast:
    """A battery's recent history and one forecast made on `origin` (its last reading then)."""

    battery_id: str
    car_id: str
    history: pd.DataFrame  # date, daily_cycles_used, lifetime_cycles_used, observed
    origin: pd.Timestamp
    lifetime_cycles_used: float
    battery_rated_cycles: float
    forecast: np.ndarray  # (horizon,) daily cycles for the days after `origin`
    days_to_failure: float  # NaN when the rating is not reached within the horizon
    predicted_failure_date: pd.Timestamp | None
    model: str
    source: str

    @property
    def forecast_dates(self) -> pd.DatetimeIndex:
        """The calendar days the forecast covers."""
        return pd.date_range(self.origin + pd.Timedelta(days=1), periods=len(self.forecast))

    @property
    def projected_lifetime(self) -> np.ndarray:
        """Lifetime cycles at the end of each forecast day."""
        return self.lifetime_cycles_used + np.cumsum(self.forecast)


def battery_readings(readings: pd.DataFrame, battery_id: str, source: str) -> pd.DataFrame:
    """One battery's readings sorted by date, or BatteryForecastError naming some known ids."""
    if readings.empty or "battery_id" not in readings.columns:
        raise BatteryForecastError(f"{source} holds no battery readings.")
    ids = readings["battery_id"].astype(str)
    mine = readings[ids == str(battery_id)]
    if mine.empty:
        known = sorted(ids.unique(), key=lambda v: (len(v), v))
        sample = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
        raise BatteryForecastError(
            f"Battery {battery_id} is not in {source} ({len(known)} batteries, e.g. {sample})."
        )
    mine = mine.assign(battery_id=str(battery_id), date=pd.to_datetime(mine["date"]))
    return mine.sort_values("date", ignore_index=True)


def recent_history(readings: pd.DataFrame, days: int = HISTORY_DAYS) -> pd.DataFrame:
    """The last `days` calendar days of one battery (parked days filled with 0 cycles)."""
    dense = daily_series(readings)
    dense["lifetime_cycles_used"] = dense["lifetime_cycles_used"].ffill()
    columns = ["date", "daily_cycles_used", "lifetime_cycles_used", "observed"]
    return dense[columns].tail(days).reset_index(drop=True)


def forecast_from_readings(
    readings: pd.DataFrame,
    battery_id: str,
    predict: Callable[[pd.DataFrame], np.ndarray],
    *,
    window_days: int,
    model: str,
    source: str,
    history_days: int = HISTORY_DAYS,
) -> BatteryForecast:
    """Forecast a battery from its own readings with `predict` (a contract forecaster)."""
    mine = battery_readings(readings, battery_id, source)
    last = mine.iloc[[-1]]
    window = build_history_windows(mine, window_days, last[["battery_id", "date"]])
    forecast = np.asarray(predict(window[model_input_columns(window)]), dtype=np.float64)[0]
    return _assemble(mine, last.iloc[0], forecast, model, source, history_days)


def forecast_from_tables(
    telemetry: pd.DataFrame,
    forecasts: pd.DataFrame,
    battery_id: str,
    *,
    source: str,
    history_days: int = HISTORY_DAYS,
) -> BatteryForecast | None:
    """The battery's history with the stream's latest champion forecast; None if it has none."""
    mine = battery_readings(telemetry, battery_id, source)
    if forecasts.empty or "battery_id" not in forecasts.columns:
        return None
    rows = forecasts[forecasts["battery_id"].astype(str) == str(battery_id)]
    if "model_role" in rows.columns:
        rows = rows[rows["model_role"].fillna("champion") == "champion"]
    if rows.empty:
        return None
    order = ["date", "scored_at"] if "scored_at" in rows.columns else ["date"]
    row = rows.assign(date=pd.to_datetime(rows["date"])).sort_values(order).iloc[-1]
    version = row.get("model_version")
    model = f"{row['model_name']} v{version}" if version else str(row["model_name"])
    forecast = np.asarray(row["forecast"], dtype=np.float64)
    return _assemble(mine, row, forecast, model, source, history_days)


def _assemble(
    readings: pd.DataFrame,
    origin_row: pd.Series,
    forecast: np.ndarray,
    model: str,
    source: str,
    history_days: int,
) -> BatteryForecast:
    origin = pd.Timestamp(origin_row["date"])
    lifetime = float(origin_row["lifetime_cycles_used"])
    rated = float(origin_row["battery_rated_cycles"])
    failure = forecast_failure_date(
        pd.Series([origin]), np.array([lifetime]), np.array([rated]), forecast[None, :]
    ).iloc[0]
    car = readings["car_id"].iloc[-1] if "car_id" in readings.columns else None
    failure_date = failure["predicted_failure_date"]
    return BatteryForecast(
        battery_id=str(readings["battery_id"].iloc[0]),
        car_id="" if car is None or pd.isna(car) else str(car),
        history=recent_history(readings, history_days),
        origin=origin,
        lifetime_cycles_used=lifetime,
        battery_rated_cycles=rated,
        forecast=forecast,
        days_to_failure=float(failure["days_to_failure"]),
        predicted_failure_date=None if pd.isna(failure_date) else pd.Timestamp(failure_date),
        model=model,
        source=source,
    )


def verdict(result: BatteryForecast) -> str:
    """One plain sentence about when the battery reaches its rated cycles."""
    rated = f"{result.battery_rated_cycles:,.0f} rated cycles"
    if result.lifetime_cycles_used >= result.battery_rated_cycles:
        return f"Already at or past its {rated} on {result.origin:%Y-%m-%d}."
    if result.predicted_failure_date is None:
        end = result.projected_lifetime[-1]
        return (
            f"Not expected to reach its {rated} within {len(result.forecast)} days "
            f"(about {end:,.0f} by {result.forecast_dates[-1]:%Y-%m-%d})."
        )
    return (
        f"Predicted to reach its {rated} on {result.predicted_failure_date:%Y-%m-%d}, "
        f"{result.days_to_failure:.0f} days after {result.origin:%Y-%m-%d}."
    )


def weekly_table(result: BatteryForecast, weeks_back: int = 4) -> pd.DataFrame:
    """Rows of 7 days: the last `weeks_back` weeks of actual use, then the forecast weeks."""
    history = result.history[result.history["date"] <= result.origin].tail(7 * weeks_back)
    rows = []
    for start in range(0, len(history), 7):
        week = history.iloc[start : start + 7]
        rows.append(
            {
                "kind": "actual",
                "start": week["date"].iloc[0],
                "end": week["date"].iloc[-1],
                "cycles": float(week["daily_cycles_used"].sum()),
                "lifetime_at_end": float(week["lifetime_cycles_used"].iloc[-1]),
            }
        )
    dates, projected = result.forecast_dates, result.projected_lifetime
    for start in range(0, len(result.forecast), 7):
        stop = min(start + 7, len(result.forecast))
        rows.append(
            {
                "kind": "forecast",
                "start": dates[start],
                "end": dates[stop - 1],
                "cycles": float(result.forecast[start:stop].sum()),
                "lifetime_at_end": float(projected[stop - 1]),
            }
        )
    return pd.DataFrame(rows)


def plot_battery_forecast(result: BatteryForecast) -> Any:
    """Two panels: daily cycles (history, forecast) and lifetime cycles against the rating."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import dates as mdates
    from matplotlib import pyplot as plt

    history, dates = result.history, result.forecast_dates
    fig, (daily, total) = plt.subplots(
        2, 1, figsize=(10, 6.5), dpi=110, sharex=True, gridspec_kw={"height_ratios": [1, 1.3]}
    )
    for ax in (daily, total):
        ax.axvspan(dates[0] - pd.Timedelta(hours=12), dates[-1], color="tab:orange", alpha=0.07)
        ax.axvline(result.origin, color="0.5", linewidth=0.8, linestyle=":")
        ax.grid(alpha=0.3)

    observed = history["observed"].to_numpy(dtype=bool)
    daily.bar(
        history["date"][observed],
        history["daily_cycles_used"][observed],
        width=0.8,
        color="tab:blue",
        label="cycles used (actual)",
    )
    daily.plot(
        dates,
        result.forecast,
        color="tab:orange",
        marker="o",
        markersize=3,
        label=f"forecast, next {len(result.forecast)} days",
    )
    daily.set_ylabel("cycles per day")
    peak = max(float(history["daily_cycles_used"].max()), float(result.forecast.max()), 0.1)
    daily.set_ylim(0, peak * 1.35)  # headroom for the legend
    daily.legend(loc="upper left", fontsize="small", ncols=2)

    rated = result.battery_rated_cycles
    total.plot(
        history["date"],
        history["lifetime_cycles_used"],
        color="tab:blue",
        label="lifetime cycles (actual)",
    )
    projected = np.r_[result.lifetime_cycles_used, result.projected_lifetime]
    total.plot(
        [result.origin, *dates],
        projected,
        color="tab:orange",
        linestyle="--",
        label="lifetime cycles (forecast)",
    )
    total.axhline(rated, color="tab:red", linewidth=1.5, label=f"rated cycles ({rated:,.0f})")
    if result.predicted_failure_date is not None:
        when = result.predicted_failure_date
        total.axvline(when, color="tab:red", linestyle="--", linewidth=1)
        total.annotate(
            f"reaches rating\n{when:%Y-%m-%d}",
            (when, rated),
            xytext=(12, -40),
            textcoords="offset points",
            ha="left",
            color="tab:red",
            fontsize="small",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "tab:red"},
            arrowprops={"arrowstyle": "->", "color": "tab:red"},
        )
    total.set_ylabel("lifetime cycles")
    total.legend(loc="upper left", fontsize="small")
    low = min(np.nanmin(history["lifetime_cycles_used"]), result.lifetime_cycles_used)
    high = max(rated, projected.max())
    total.set_ylim(low - 0.05 * (high - low + 1), high + 0.08 * (high - low + 1))
    total.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()

    car = f" (car {result.car_id})" if result.car_id else ""
    fig.suptitle(f"Battery {result.battery_id}{car}: {verdict(result)}", fontsize="medium")
    daily.set_title(f"forecast by {result.model} on {result.origin:%Y-%m-%d}", fontsize="small")
    fig.tight_layout()
    plt.close(fig)
    return fig


def default_plot_path(battery_id: str) -> Path:
    """`battery-<id>-forecast.png` in the current folder, with a file-safe id."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", battery_id).strip("._") or "battery"
    return Path(f"battery-{safe}-forecast.png")
