"""Forecast quality of the AutoML sweep and the LSTM, and the 30-day failure alert they give.

On a simulated fleet (written with the file sink, so the simulator's ground truth is there)
and on the lab-schema fixture, this runs `train_automl` into a temporary MLflow store with
every candidate (threshold 0) and reports:
  - the leaderboard; the best NRMSE against the lab's bar (0.1355), seasonal naive (>= 20%
    better wanted) and the noise floor (the simulator's expected daily use scored on the
    same folds; within 10% wanted); the LSTM against the best (within 5% wanted);
  - oracle_now (today's expected weekly pattern held over the horizon) and, per fold, the
    best model and the LSTM against the floor on all rows and on steady rows, so the part
    of the gap left by changes no window foresees shows;
  - per model, the 30-day failure alert against ground truth (recall >= 0.95, precision
    >= 0.90, median lead >= 20 days), for the plain rule and for margins m = 0..4 days
    (alert when predicted days to failure <= 30 - m) and a two-readings rule.
`--budget-check` instead times one sweep with the default 10-minute budget on a larger
fleet. `--make-fixture` rewrites tests/fixtures/lab/daily-battery-time-series-v2.csv.

Run: python benchmarks/forecast_quality.py [--batteries 300] [--days 400] [--skip-lab]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import PitstopConfig, StorageConfig, load_config
from models.forecasting.candidates import FitRequest
from models.forecasting.cv import CvFold, rolling_origin_folds, score_fold
from models.forecasting.features import build_history_windows, forecast_failure_date
from models.forecasting.metrics import alert_quality, nrmse
from models.forecasting.pyfunc import coerce_model_input

ROOT = Path(__file__).resolve().parents[1]
LAB_FIXTURE = ROOT / "tests" / "fixtures" / "lab" / "daily-battery-time-series-v2.csv"
# The fixture's simulation; the benchmark reruns it to get the truth behind the CSV.
LAB_SIMULATION = {"batteries": 12, "days": 240, "seed": 21, "start_date": "2024-03-01"}
WITHIN_DAYS = 30
MARGINS = (0, 1, 2, 3, 4)
# A week-on-week change of expected use beyond this (~10%) is a new owner or job; the
# seasonal factors move at most ~4% a week.
REGIME_JUMP = 0.1
# Readings whose remaining cycles exceed this many times 30 days of the window's busiest day
# cannot alert under any sane forecast; skipping them keeps per-window models (ETS refits
# every window) to minutes. A forecast would need > 2x the window's maximum daily use to
# alert on a skipped reading.
ALERT_PREFILTER = 2.0

log = logging.getLogger("forecast_quality")


def make_test_config(root: Path) -> PitstopConfig:
    """The local configuration with its lake and MLflow store under `root` (a temp folder)."""
    cfg = load_config("local")
    mlflow = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": str(root / "art")}
    return cfg.model_copy(
        update={
            "storage": StorageConfig(lake=str(root / "lake"), checkpoints=str(root / "ckpt")),
            "mlflow": cfg.mlflow.model_copy(update=mlflow),
        }
    )


def simulate(folder: Path, batteries: int, days: int, seed: int, start_date: str) -> None:
    """Simulate a fleet into `folder` with the files sink (truth in `folder/truth`)."""
    from simulator.run import run_simulation

    cfg = make_test_config(folder / "cfg")
    run_simulation(
        cfg,
        sink="files",
        batteries=batteries,
        days=days,
        seed=seed,
        start_date=start_date,
        output_dir=folder / "sim",
        notes=False,
    )


def make_lab_fixture(path: Path = LAB_FIXTURE) -> Path:
    """Write the lab-schema fixture from a small seeded simulation, with an unnamed index."""
    from core.contract import contract_to_lab_frame
    from models.forecasting.data import load_readings

    with tempfile.TemporaryDirectory() as tmp:
        simulate(Path(tmp), **LAB_SIMULATION)
        readings = load_readings(Path(tmp) / "sim")
    lab = contract_to_lab_frame(readings)
    # The lab's battery ids are integers (B000012 -> 12).
    lab["Battery_ID"] = lab["Battery_ID"].str.lstrip("B").astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    lab.to_csv(path)
    return path


def expected_use(fold: CvFold, expected: pd.DataFrame) -> np.ndarray:
    """(n, horizon) the simulator's expected daily use on each forecast day (0 if unknown)."""
    cells = fold.target_dates().merge(expected, on=["battery_id", "date"], how="left")
    values = cells["expected_daily_cycles"].to_numpy(dtype=np.float64)
    return np.nan_to_num(values).reshape(fold.actual.shape)


def noise_floor(folds: list[CvFold], expected: pd.DataFrame) -> dict[str, float]:
    """Mean over folds of the metrics of the simulator's expected daily use as a forecast."""
    scores = [score_fold(fold, expected_use(fold, expected)) for fold in folds]
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}


def oracle_now(fold: CvFold, expected: pd.DataFrame) -> np.ndarray:
    """Each row's expected use of the week up to its base day, held over the horizon.

    It knows each battery's weekly pattern of today exactly but none of its changes to come
    (a new owner or job, the season's drift): the most a forecaster could learn from the past.
    """
    base = pd.to_datetime(fold.inputs["date"]).to_numpy()
    back = np.arange(-6, 1) * np.timedelta64(1, "D")
    week = pd.DataFrame(
        {
            "battery_id": np.repeat(fold.inputs["battery_id"].to_numpy(), 7),
            "date": (base[:, None] + back[None, :]).ravel(),
        }
    ).merge(expected, on=["battery_id", "date"], how="left")
    pattern = week["expected_daily_cycles"].to_numpy(dtype=np.float64).reshape(-1, 7)
    # A battery installed during that week: its first days take the mean of the rest.
    known = np.isfinite(pattern)
    level = np.nansum(pattern, axis=1) / np.maximum(known.sum(axis=1), 1)
    pattern = np.where(known, pattern, level[:, None])
    # Day -6 falls on the weekday of forecast day 1.
    return np.tile(pattern, -(-fold.horizon // 7))[:, : fold.horizon]


@dataclass(frozen=True)
class AlertPeriod:
    """Models fit on readings up to `since`, forecast every reading in (since, stop].

    The truth runs 30 days past `stop`, so every alert raised is verifiable (precision); a
    battery counts for recall and lead time only when it fails in (since + 30, stop + 1], so
    its whole 30-day run-up was scored.
    """

    since: pd.Timestamp
    stop: pd.Timestamp

    @classmethod
    def of(cls, readings: pd.DataFrame, window_days: int) -> AlertPeriod:
        """The second half of the data, leaving the final 30 days for the truth to unfold."""
        dates = pd.to_datetime(readings["date"])
        first, stop = dates.min(), dates.max() - pd.Timedelta(days=WITHIN_DAYS)
        since = first + max(pd.Timedelta(days=window_days + WITHIN_DAYS), (stop - first) / 2)
        return cls(since.normalize(), stop)

    def due(self, truth: pd.DataFrame) -> pd.DataFrame:
        """Truth rows of the batteries whose whole 30-day run-up to failure was scored."""
        failure = pd.to_datetime(truth["failure_date"])
        start = self.since + pd.Timedelta(days=WITHIN_DAYS)
        return truth[(failure > start) & (failure <= self.stop + pd.Timedelta(days=1))]


def steady_rows(fold: CvFold, expected: pd.DataFrame, window_days: int) -> np.ndarray:
    """Rows with a full window and no jump in expected use (a new owner or job) from the
    window's start to the horizon's end: what a forecaster could know."""
    base = pd.to_datetime(fold.inputs["date"])
    own = expected.merge(fold.inputs[["battery_id"]].assign(base=base), on="battery_id")
    own = own[
        (own["date"] > own["base"] - pd.Timedelta(days=window_days))
        & (own["date"] <= own["base"] + pd.Timedelta(days=fold.horizon))
    ]
    week_before = own[["battery_id", "date", "expected_daily_cycles"]].assign(
        date=own["date"] + pd.Timedelta(days=7)
    )
    paired = own.merge(week_before, on=["battery_id", "date"], suffixes=("", "_prev"))
    ratio = np.log(paired["expected_daily_cycles"] / paired["expected_daily_cycles_prev"])
    jumped = set(paired.loc[ratio.abs() > REGIME_JUMP, "battery_id"])
    full = fold.inputs["daily_cycles"].map(len).to_numpy() >= window_days
    return full & ~fold.inputs["battery_id"].isin(jumped).to_numpy()


def steady_table(
    folds: list[CvFold],
    forecasts: dict[str, list[np.ndarray]],
    expected: pd.DataFrame,
    window_days: int,
) -> pd.DataFrame:
    """Per fold, NRMSE on all rows and on steady rows of the floor, oracle_now and each
    model's forecast (one per fold), with each one's distance from the floor."""
    out = []
    for number, fold in enumerate(folds):
        steady = steady_rows(fold, expected, window_days)
        named = {"floor": expected_use(fold, expected), "oracle_now": oracle_now(fold, expected)}
        named.update({name: per_fold[number] for name, per_fold in forecasts.items()})
        for rows, kept in (("all", np.ones_like(steady)), ("steady", steady)):
            floor = nrmse(fold.actual[kept], named["floor"][kept])
            line = {"fold": f"{number + 1} ({fold.origin.date()})", "rows": f"{rows} {kept.sum()}"}
            for name, forecast in named.items():
                score = nrmse(fold.actual[kept], forecast[kept])
                line[name] = score if name == "floor" else f"{score:.4f} {score / floor - 1:+.0%}"
            out.append(line)
    return pd.DataFrame(out)


def alert_rows(readings: pd.DataFrame, period: AlertPeriod, window_days: int) -> pd.DataFrame:
    """Contract rows for every reading in the period that could plausibly alert."""
    dates = pd.to_datetime(readings["date"])
    upto = readings[dates <= period.stop]
    wanted = upto.loc[pd.to_datetime(upto["date"]) > period.since, ["battery_id", "date"]]
    rows = build_history_windows(upto, window_days, wanted)
    busiest = np.array([np.nanmax(h) if len(h) else 0.0 for h in rows["daily_cycles"]])
    remaining = rows["battery_rated_cycles"] - rows["lifetime_cycles_used"]
    return rows[remaining <= ALERT_PREFILTER * WITHIN_DAYS * busiest].reset_index(drop=True)


def score_alerts(
    model: object, rows: pd.DataFrame, readings: pd.DataFrame, period: AlertPeriod
) -> pd.DataFrame:
    """Each row's predicted failure from one model's forecast, plus every battery's last day.

    Batteries the prefilter skipped still have scored readings: their last one is added
    without a predicted failure, so a battery that fails unforeseen still counts as due.
    """
    forecast = model.forecast(coerce_model_input(rows))  # type: ignore[attr-defined]
    failure = forecast_failure_date(
        rows["date"], rows["lifetime_cycles_used"], rows["battery_rated_cycles"], forecast
    )
    scored = pd.concat([rows[["battery_id", "date"]], failure], axis=1)
    frame = readings.assign(date=pd.to_datetime(readings["date"]))
    inside = frame[(frame["date"] > period.since) & (frame["date"] <= period.stop)]
    last = inside.groupby("battery_id", as_index=False)["date"].max()
    last = last.assign(predicted_failure_date=pd.NaT, days_to_failure=np.nan)
    scored = pd.concat([scored, last], ignore_index=True)
    return scored.sort_values(["battery_id", "date"], kind="stable", ignore_index=True)


def alert_table(scored: pd.DataFrame, truth: pd.DataFrame, period: AlertPeriod) -> pd.DataFrame:
    """Alert quality (grace 0) per rule: margin m days, or two triggering readings in a row."""
    due, worn = period.due(truth), period.due(truth[truth["cause"] != "weak_cell"])
    rules = {}
    for margin in MARGINS:
        # Alerting at days_to_failure <= 30 - m is the plain rule on a date m days later.
        rules[f"m={margin}"] = scored.assign(
            predicted_failure_date=scored["predicted_failure_date"] + pd.Timedelta(days=margin)
        )
    days = scored["days_to_failure"]
    firing = days.notna() & (days <= WITHIN_DAYS)
    previous = firing.groupby(scored["battery_id"]).shift(1, fill_value=False).astype(bool)
    rules["2 in a row"] = scored.assign(
        predicted_failure_date=scored["predicted_failure_date"].where(firing & previous)
    )
    out = []
    for rule, frame in rules.items():
        everything = alert_quality(frame, truth, WITHIN_DAYS, 0)
        observed = alert_quality(frame, due, WITHIN_DAYS, 0)
        out.append(
            {
                "rule": rule,
                "alerts": everything["alerts"],
                "precision": everything["precision"],
                "due": observed["batteries_due"],
                "recall": observed["recall"],
                "recall_worn": alert_quality(frame, worn, WITHIN_DAYS, 0)["recall"],
                "median_lead_days": observed["median_lead_days"],
            }
        )
    return pd.DataFrame(out)


def evaluate(
    name: str,
    readings: pd.DataFrame,
    truth_folder: Path,
    workdir: Path,
    candidates: tuple[str, ...] = (),
) -> None:
    """Sweep every candidate, then report accuracy, floor and alert quality."""
    from models.training.automl import AutomlSettings, train_automl

    cfg = make_test_config(workdir / f"mlflow-{name}")
    started = time.monotonic()
    settings = AutomlSettings(
        metric_threshold=None, time_budget_s=None, data_source=name, candidates=candidates
    )
    captured: dict[str, object] = {}
    per_fold: dict[str, list[np.ndarray]] = {}

    def keep(result: object) -> None:
        captured[result.name] = result  # type: ignore[attr-defined]

    def keep_fold(result: object, number: int) -> None:
        per_fold.setdefault(result.name, []).append(result.last_forecast)  # type: ignore[attr-defined]

    result = train_automl(cfg, readings, settings, on_fold=keep_fold, on_candidate=keep)
    board = result.leaderboard.set_index("candidate")
    print(
        f"\n== {name}: {readings['battery_id'].nunique()} batteries, "
        f"{len(readings):,} readings; sweep {time.monotonic() - started:.0f}s =="
    )
    print(result.leaderboard.drop(columns=["description", "library"]).to_string(index=False))
    folds = rolling_origin_folds(readings, 3, 30, cfg.forecast.window_days)
    expected = pd.read_csv(truth_folder / "readings.csv.gz", parse_dates=["date"])
    floor = noise_floor(folds, expected)
    oracle = np.mean([score_fold(f, oracle_now(f, expected))["nrmse"] for f in folds])
    # The registered best is chosen on alerts first; accuracy is judged on the best NRMSE.
    accurate = board["cv_nrmse"].idxmin()
    best = board.loc[accurate, "cv_nrmse"]
    naive = board["cv_nrmse"].get("seasonal_naive", np.nan)
    lstm = board.loc["lstm", "cv_nrmse"] if "lstm" in board.index else np.nan
    print(f"registered (best on alerts, then NRMSE): {result.best}")
    print(
        f"best NRMSE {accurate}: {best:.4f} (lab bar 0.1355: {best <= 0.1355}); "
        f"{100 * (1 - best / naive):.1f}% below seasonal naive {naive:.4f} (want >= 20%); "
        f"noise floor {floor['nrmse']:.4f}, best is {100 * (best / floor['nrmse'] - 1):.1f}% "
        f"above (want <= 10%); LSTM {lstm:.4f} is {100 * (lstm / best - 1):+.1f}% vs best "
        f"(want <= +5%)"
    )
    print(
        f"best NRMSE is {100 * (best / oracle - 1):+.1f}% vs the knowable oracle (want <= +3%); "
        f"oracle_now {oracle:.4f} is {100 * (oracle / floor['nrmse'] - 1):.0f}% above the floor: "
        f"today's expected weekly pattern held {folds[0].horizon} days misses only what changes "
        f"within the horizon (a new owner or job, the season's drift)"
    )
    shown = {
        model: per_fold[model]
        for model in dict.fromkeys((accurate, result.best, "lstm"))
        if len(per_fold.get(model, [])) == len(folds)
    }
    print(
        "-- NRMSE and % above the floor on the same rows, per fold: all rows, and steady rows "
        "(a full window, no change of owner or job from its start to the horizon's end) --"
    )
    table = steady_table(folds, shown, expected, cfg.forecast.window_days)
    print(table.to_string(index=False, float_format="{:.4f}".format))
    truth = pd.read_csv(truth_folder / "batteries.csv")
    period = AlertPeriod.of(readings, cfg.forecast.window_days)
    history = readings[pd.to_datetime(readings["date"]) <= period.since]
    rows = alert_rows(readings, period, cfg.forecast.window_days)
    print(
        f"alerts: fit to {period.since.date()}, {len(rows):,} readings to {period.stop.date()} "
        f"scored (of batteries that could alert); due with a whole run-up: "
        f"{_causes(period.due(truth))}"
    )
    for model_name in dict.fromkeys(("seasonal_naive", result.best, "lstm")):
        swept = captured.get(model_name)
        if swept is None or not swept.ranked:  # type: ignore[attr-defined]
            continue
        # Refit before the period: a global model fitted later would have seen the cycles
        # it is asked to foresee.
        model = swept.candidate.fit(FitRequest(history))  # type: ignore[attr-defined]
        table = alert_table(score_alerts(model, rows, readings, period), truth, period)
        print(f"-- alert quality of {model_name} (grace 0) --")
        print(table.round(3).to_string(index=False))


def _causes(truth: pd.DataFrame) -> str:
    return ", ".join(f"{n} {c}" for c, n in truth["cause"].value_counts().items()) or "none"


def budget_check(batteries: int, days: int, workdir: Path, budget_s: float = 600.0) -> None:
    """Time one sweep with every candidate under a time budget (default the CLI's 10 minutes)."""
    from models.forecasting.data import load_readings
    from models.training.automl import AutomlSettings, train_automl

    simulate(workdir / "big", batteries, days, seed=5, start_date="2024-01-01")
    readings = load_readings(workdir / "big" / "sim")
    cfg = make_test_config(workdir / "mlflow-budget")
    started = time.monotonic()
    settings = AutomlSettings(metric_threshold=None, time_budget_s=budget_s)
    result = train_automl(cfg, readings, settings)
    print(
        f"budget {budget_s:.0f}s, {batteries} batteries x {days} days: finished in "
        f"{time.monotonic() - started:.0f}s ({result.stopped_reason}; best {result.best})"
    )
    print(result.leaderboard[["candidate", "status", "cv_nrmse", "fit_seconds"]].to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batteries", type=int, default=300)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-lab", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--budget-check", action="store_true")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds, --budget-check")
    parser.add_argument("--make-fixture", action="store_true")
    parser.add_argument("--candidates", default="", help="comma-separated [default: all]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")
    if args.make_fixture:
        path = make_lab_fixture()
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
        return
    from models.forecasting.data import load_readings

    names = tuple(n for n in args.candidates.split(",") if n)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.budget_check:
            budget_check(args.batteries, args.days, work, args.budget)
            return
        if not args.skip_fleet:
            simulate(work / "fleet", args.batteries, args.days, args.seed, "2024-01-01")
            readings = load_readings(work / "fleet" / "sim")
            evaluate("simulated fleet", readings, work / "fleet" / "sim" / "truth", work, names)
        if not args.skip_lab:
            simulate(work / "lab", **LAB_SIMULATION)
            readings = load_readings(LAB_FIXTURE)
            truth = work / "lab" / "sim" / "truth"
            evaluate("lab-schema fixture", _lab_ids(readings), truth, work, names)


def _lab_ids(readings: pd.DataFrame) -> pd.DataFrame:
    """The fixture's integer ids back to the simulator's (12 -> B000012), to join its truth."""
    return readings.assign(battery_id="B" + readings["battery_id"].str.zfill(6))


if __name__ == "__main__":
    main()
