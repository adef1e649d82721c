"""Live accuracy of the forecasters, from `forecast_accuracy` rows (pure pandas).

Each row pairs one day of a stored forecast with the reading that arrived for that day
(`streaming.monitor`). Scored the way the offline holdout is (`models.forecasting.metrics`):
NRMSE is the RMSE of every pair in a window pooled over batteries and horizon days, divided
by the range (max - min) of the actual values in that window, so a champion's live NRMSE
reads against the `holdout_nrmse` logged with its version. Input drift compares the live
daily cycles with quantiles of the training data that each forecast version logs at
training time (`daily_cycles_profile`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import PitstopError

GROUP = ["model_name", "model_version", "model_role"]
LIVE_COLUMNS = [
    *GROUP,
    "day",
    "day_pairs",
    "pairs",
    "nrmse",
    "rmse",
    "mae",
    "window_days",
]
# The training data's daily-cycles quantiles, logged as run metrics with each version.
PROFILE_PREFIX = "train_daily_cycles_q"
PROFILE_LEVELS = np.linspace(0.0, 1.0, 21)


class LiveMetricsError(PitstopError, ValueError):
    """Accuracy rows that cannot be scored; the message names what is missing."""


def _require(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LiveMetricsError(f"Accuracy rows need the column(s) {', '.join(missing)}.")


def _errors(frame: pd.DataFrame) -> pd.Series:
    if "error" in frame.columns:
        return frame["error"].astype(float)
    return frame["forecast"].astype(float) - frame["actual"].astype(float)


def live_metrics(frame: pd.DataFrame, window_days: int = 7) -> pd.DataFrame:
    """Rolling NRMSE, RMSE and MAE per model, version and role, by target day.

    Each day's figures pool every pair whose target date lies in the `window_days` days
    ending that day (`pairs` of them; `day_pairs` on the day itself). Days without pairs
    are left out. An empty frame gives an empty result with LIVE_COLUMNS.
    """
    if window_days < 1:
        raise LiveMetricsError(f"window_days must be at least 1, got {window_days}.")
    if frame.empty:
        return pd.DataFrame(columns=LIVE_COLUMNS)
    _require(frame, [*GROUP, "target_date", "actual"])
    scored = frame.assign(
        _e=_errors(frame),
        _a=frame["actual"].astype(float),
        day=pd.to_datetime(frame["target_date"]),
    )
    scored = scored[np.isfinite(scored["_e"]) & np.isfinite(scored["_a"])]
    daily = scored.groupby([*GROUP, "day"]).agg(
        day_pairs=("_e", "size"),
        sse=("_e", lambda e: float(np.square(e).sum())),
        sae=("_e", lambda e: float(np.abs(e).sum())),
        amin=("_a", "min"),
        amax=("_a", "max"),
    )
    parts = [_rolling(group, window_days) for _, group in daily.groupby(level=GROUP)]
    if not parts:
        return pd.DataFrame(columns=LIVE_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out["window_days"] = window_days
    return out[LIVE_COLUMNS].sort_values([*GROUP, "day"], ignore_index=True)


def _rolling(daily: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """One model version's daily sums rolled over calendar days (missing days count empty)."""
    keys = daily.index[0][: len(GROUP)]
    days = daily.reset_index(level=GROUP, drop=True)
    calendar = pd.date_range(days.index.min(), days.index.max(), freq="D")
    days = days.reindex(calendar)
    sums_of = ["day_pairs", "sse", "sae"]
    days[sums_of] = days[sums_of].fillna(0.0)  # a day without pairs adds nothing
    window = days.rolling(window_days, min_periods=1)
    sums = window[sums_of].sum()
    spread = window["amax"].max() - window["amin"].min()
    with np.errstate(invalid="ignore", divide="ignore"):  # empty windows are dropped below
        rmse = np.sqrt(sums["sse"] / sums["day_pairs"])
        mae = sums["sae"] / sums["day_pairs"]
    out = pd.DataFrame(
        {
            "day": calendar.date,
            "day_pairs": days["day_pairs"].astype(int).to_numpy(),
            "pairs": sums["day_pairs"].astype(int).to_numpy(),
            "rmse": rmse.to_numpy(),
            "nrmse": np.where(spread > 0, rmse / spread.where(spread > 0), np.nan),
            "mae": mae.to_numpy(),
        }
    )
    for name, value in zip(GROUP, keys, strict=True):
        out[name] = value
    return out[out["day_pairs"] > 0]


def compare_live(frame: pd.DataFrame, days: int | None = None) -> pd.DataFrame:
    """Pooled NRMSE, RMSE and MAE per model version over the last `days` target days (all
    when None), on the pairs every compared version scored -- the same batteries, forecast
    dates and horizon days -- so their normalisation is the same too.

    Columns: GROUP, pairs, nrmse, rmse, mae, first_day, last_day.
    """
    columns = [*GROUP, "pairs", "nrmse", "rmse", "mae", "first_day", "last_day"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    _require(frame, [*GROUP, "battery_id", "forecast_date", "horizon_day", "target_date"])
    scored = frame.assign(_e=_errors(frame), _day=pd.to_datetime(frame["target_date"]))
    if days is not None:
        since = scored["_day"].max() - pd.Timedelta(days=days - 1)
        scored = scored[scored["_day"] >= since]
    key = ["battery_id", "forecast_date", "horizon_day"]
    version = scored[GROUP].astype(str).agg("|".join, axis=1)
    shared = version.groupby([scored[k] for k in key]).transform("nunique") == version.nunique()
    common = scored[shared]
    rows = []
    for keys, group in common.groupby(GROUP):
        errors, actual = group["_e"].to_numpy(float), group["actual"].to_numpy(float)
        spread = float(actual.max() - actual.min())
        rmse = float(np.sqrt(np.mean(np.square(errors))))
        rows.append(
            {
                **dict(zip(GROUP, keys, strict=True)),
                "pairs": len(group),
                "nrmse": rmse / spread if spread > 0 else float("nan"),
                "rmse": rmse,
                "mae": float(np.mean(np.abs(errors))),
                "first_day": group["_day"].min().date(),
                "last_day": group["_day"].max().date(),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def champion_health(
    daily: pd.DataFrame,
    holdout_nrmse: float | None,
    margin: float,
    days: int,
    min_pairs: int,
) -> dict[str, object]:
    """Is the champion's live NRMSE above its holdout NRMSE x (1 + margin) on the last `days`
    consecutive days (each with a window of at least `min_pairs` pairs)?

    `daily` is one version's `live_metrics`. Returns status (`degraded`, `ok`, or `unknown`
    without a holdout figure or enough pairs), days_over, threshold and the latest day's
    figures.
    """
    counted = daily[daily["pairs"] >= min_pairs].sort_values("day")
    latest = counted.iloc[-1] if not counted.empty else None
    result: dict[str, object] = {
        "day": None if latest is None else latest["day"],
        "live_nrmse": float("nan") if latest is None else float(latest["nrmse"]),
        "live_mae": float("nan") if latest is None else float(latest["mae"]),
        "pairs": 0 if latest is None else int(latest["pairs"]),
        "holdout_nrmse": float("nan") if holdout_nrmse is None else float(holdout_nrmse),
        "threshold": float("nan"),
        "days_over": 0,
        "status": "unknown",
    }
    if latest is None or holdout_nrmse is None or not np.isfinite(holdout_nrmse):
        return result
    threshold = float(holdout_nrmse) * (1.0 + margin)
    over = 0
    previous = None
    for row in counted.iloc[::-1].itertuples(index=False):
        consecutive = previous is None or (previous - row.day).days == 1
        if not consecutive or not row.nrmse > threshold:
            break
        over, previous = over + 1, row.day
    result.update(threshold=threshold, days_over=over, status="degraded" if over >= days else "ok")
    return result


def daily_cycles_profile(readings: pd.DataFrame) -> dict[str, float]:
    """Quantiles (0, 5, ..., 100 %) of the readings' daily cycles, as run metrics to log with a
    trained forecaster: what the monitor compares live inputs with."""
    _require(readings, ["daily_cycles_used"])
    values = readings["daily_cycles_used"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    quantiles = np.quantile(values, PROFILE_LEVELS)
    return {
        f"{PROFILE_PREFIX}{round(level * 100):03d}": float(q)
        for level, q in zip(PROFILE_LEVELS, quantiles, strict=True)
    }


def profile_quantiles(metrics: dict[str, float]) -> tuple[np.ndarray, np.ndarray] | None:
    """(levels, quantiles) of a profile from a run's metrics; None when it logged none."""
    found = sorted(
        (int(k.removeprefix(PROFILE_PREFIX)) / 100.0, float(v))
        for k, v in metrics.items()
        if k.startswith(PROFILE_PREFIX) and k.removeprefix(PROFILE_PREFIX).isdigit()
    )
    if len(found) < 2:
        return None
    levels, quantiles = (np.array(x) for x in zip(*found, strict=True))
    return levels, quantiles


def input_drift(live: np.ndarray, levels: np.ndarray, quantiles: np.ndarray) -> dict[str, float]:
    """How far live daily cycles moved from the training profile (`profile_quantiles`).

    `psi`: population stability index over the profile's quantile bins (< 0.1 steady, > 0.25
    a shift worth a look, by the usual rule of thumb); `ks`, `ks_pvalue`: scipy's one-sample
    Kolmogorov-Smirnov test against the profile's interpolated CDF (NaN without scipy).
    """
    values = np.asarray(live, dtype=float)
    values = values[np.isfinite(values)]
    out = {"psi": float("nan"), "ks": float("nan"), "ks_pvalue": float("nan"), "n": values.size}
    if values.size == 0:
        return out
    # Repeated quantiles (many days of 0 cycles) collapse into one edge holding their mass.
    edges = np.unique(quantiles)
    last = len(quantiles) - 1 - np.unique(quantiles[::-1], return_index=True)[1]
    cdf_at = levels[last]

    def cdf(x: np.ndarray) -> np.ndarray:
        return np.interp(x, edges, cdf_at, left=0.0, right=1.0)

    inner = edges[1:-1] if len(edges) > 2 else edges[:0]
    bounds = np.concatenate(([-np.inf], inner, [np.inf]))
    expected = np.diff(np.concatenate(([0.0], cdf(inner), [1.0])))
    observed = np.histogram(values, bins=bounds)[0] / values.size
    e, o = np.clip(expected, 1e-4, None), np.clip(observed, 1e-4, None)
    out["psi"] = float(np.sum((o - e) * np.log(o / e)))
    try:
        from scipy.stats import ks_1samp
    except ImportError:  # scipy is a dependency, but the PSI alone still says something
        return out
    test = ks_1samp(values, cdf)
    out["ks"], out["ks_pvalue"] = float(test.statistic), float(test.pvalue)
    return out
