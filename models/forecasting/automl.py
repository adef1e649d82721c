"""The AutoML sweep: every candidate on the same rolling-origin folds, under exit criteria.

Each candidate's model of a fold forecasts the fold's horizon (NRMSE and friends) and, given
an `AlertJudge`, scores the failure risk of every reading of the fold's period -- the days
until the next fold's fit -- which, pooled over the folds, gives its alert quality
(`calibration.crossfit_alerts`). The best candidate is chosen on alert quality first -- the
target precision reached, then recall, then median lead -- and then on NRMSE (`best`).

Candidates run cheapest first. Exit criteria, as Azure ML's automated ML has them:
- time budget: no fold starts once the budget is spent, and a fold whose forecasts would
  run past it stops between chunks of windows; an unfinished candidate is not ranked. Like
  Azure ML's iteration timeout, each candidate that is not a baseline gets an equal share
  of what is left of the budget among those still to run (what one leaves unused passes
  on), so one slow family -- ETS scores a window in 30-60 ms, and on a large fleet its
  folds alone outlast a 10-minute budget -- cannot spend the time of the ones after it.
- metric threshold: once a finished candidate's mean NRMSE is at or below the threshold, no
  further candidate starts. The baselines always all run first, whatever the criteria,
  so the leaderboard shows what a trivial rule achieves (seconds each; tuning the cycle rule
  took 86 s on 1,500 batteries).
A candidate that raises is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from core.errors import PitstopError
from models.forecasting.candidates import Candidate, FitRequest
from models.forecasting.cv import METRICS, CvFold, model_inputs, score_fold
from models.forecasting.pyfunc import ForecastPythonModel, coerce_model_input

log = logging.getLogger(__name__)

PRIMARY_METRIC = "nrmse"
# Windows forecast between two looks at the clock: bounds how far a slow model (ETS at
# ~30-60 ms a window) can run past the budget.
PREDICT_CHUNK = 128
# Share of a fold's time a candidate's fit may take (`FitRequest.time_budget_s`).
FIT_SHARE = 0.5

DONE, STOPPED, FAILED, SKIPPED = "done", "stopped: time budget", "failed", "skipped"


class AutomlError(PitstopError, ValueError):
    """A sweep that cannot run as asked; the message says what to change."""


@dataclass
class CandidateResult:
    """One candidate's cross-validation: metrics per fold, timings and its last-fold model."""

    candidate: Candidate
    status: str = SKIPPED
    reason: str = ""
    fold_metrics: list[dict[str, float]] = field(default_factory=list)
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    windows: int = 0
    last_model: ForecastPythonModel | None = None
    last_forecast: np.ndarray | None = None
    # Raw risks of each fold's period, and the alert quality they give (crossfit).
    risk_tables: list[pd.DataFrame] = field(default_factory=list)
    alerts: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The candidate's name."""
        return self.candidate.name

    @property
    def ranked(self) -> bool:
        """Whether it finished every fold and so takes part in the ranking."""
        return self.status == DONE

    def mean_metrics(self) -> dict[str, float]:
        """Mean over folds of each metric (NaN before any fold finished)."""
        return {
            m: float(np.mean([f[m] for f in self.fold_metrics])) if self.fold_metrics else np.nan
            for m in METRICS
        }

    @property
    def predict_s_per_1k(self) -> float:
        """Seconds to forecast 1,000 windows, refit included for per-series models."""
        return 1000.0 * self.predict_seconds / self.windows if self.windows else np.nan


@dataclass
class SweepResult:
    """All candidates' results, in run order, and why the sweep ended."""

    results: list[CandidateResult]
    stopped_reason: str
    seconds: float
    alert_precision: float | None = None

    def best(self) -> CandidateResult:
        """The finished candidate with the best alerts (`selection_key`), then lowest NRMSE."""
        ranked = [r for r in self.results if r.ranked]
        if not ranked:
            raise AutomlError(
                "No candidate finished its folds; raise --time-budget or check the log."
            )
        return min(ranked, key=lambda r: selection_key(r, self.alert_precision))


def selection_key(result: CandidateResult, target_precision: float | None) -> tuple:
    """Sort key of a candidate (lower is better): alert quality when judged -- the target
    precision reached, recall (to 0.01), median lead (whole days) -- then mean NRMSE."""
    nrmse = result.mean_metrics()[PRIMARY_METRIC]
    alerts = result.alerts
    if target_precision is None or not alerts:
        return (1, 0, 0.0, 0.0, nrmse)
    reached = bool(np.nan_to_num(alerts.get("precision", np.nan)) >= target_precision)
    recall = round(float(np.nan_to_num(alerts.get("recall", np.nan))), 2)
    lead = round(float(np.nan_to_num(alerts.get("median_lead_days", np.nan))))
    return (0, -int(reached), -recall, -lead, nrmse)


@dataclass(frozen=True)
class AlertJudge:
    """What a sweep needs to judge candidates' alerts: the readings (failures are read from
    them) and the objective."""

    readings: pd.DataFrame
    target_precision: float
    within_days: int = 30

    def __call__(self, tables: list[pd.DataFrame]) -> dict[str, float]:
        """Cross-fitted alert quality and ECE of the pooled period risks; {} when the periods
        hold no failure to judge by."""
        from models.forecasting.calibration import crossfit_alerts
        from models.forecasting.risk import RiskError

        table = pd.concat(tables, ignore_index=True)
        if table.empty:
            return {}
        try:
            return crossfit_alerts(
                table,
                self.readings,
                target_precision=self.target_precision,
                within_days=self.within_days,
            )
        except RiskError as exc:
            log.warning("Alerts not judged: %s", exc)
            return {}


OnFold = Callable[[CandidateResult, int], None]
OnCandidate = Callable[[CandidateResult], None]


def evaluate_candidate(
    candidate: Candidate,
    folds: Sequence[CvFold],
    deadline: float | None = None,
    seed: int = 0,
    on_fold: OnFold | None = None,
    judge: AlertJudge | None = None,
) -> CandidateResult:
    """Fit on each fold's history, forecast its windows and score them (and, with a `judge`,
    the risks of its period), until `deadline` (a `time.monotonic()` value; baselines
    ignore it)."""
    result = CandidateResult(candidate=candidate)
    fold_seconds: list[float] = []
    try:
        for index, fold in enumerate(folds):
            if not candidate.baseline and _out_of_time(deadline, fold_seconds):
                result.status = STOPPED
                break
            started = time.monotonic()
            remaining = None if deadline is None else max(0.0, deadline - started)
            # The fit gets part of the fold's time: forecasting the fold's windows and
            # scoring its period follow (the LSTM bounds its epochs by it; others ignore it).
            fold_budget = (
                None if remaining is None else FIT_SHARE * remaining / (len(folds) - index)
            )
            request = FitRequest(fold.history, time_budget_s=fold_budget, seed=seed)
            if judge is not None:
                request = replace(
                    request,
                    alert_precision=judge.target_precision,
                    alert_within_days=judge.within_days,
                )
            model = candidate.fit(request)
            fitted = time.monotonic()
            limit = None if candidate.baseline else deadline
            forecast = _forecast(model, model_inputs(fold), limit)
            table = _period_risks(model, fold, limit) if judge is not None else None
            done = time.monotonic()
            if forecast is None or (judge is not None and table is None):
                result.status = STOPPED
                break
            _record(result, model, forecast, score_fold(fold, forecast), fitted - started)
            result.predict_seconds += done - fitted
            if table is not None:
                result.risk_tables.append(table)
            fold_seconds.append(done - started)
            if on_fold is not None:
                on_fold(result, index + 1)
        else:
            result.status = DONE
            if judge is not None:
                result.alerts = judge(result.risk_tables)
    except Exception as exc:  # one broken candidate must not end the sweep
        log.warning("Candidate %s failed: %s", candidate.name, exc, exc_info=True)
        result.status, result.reason = FAILED, str(exc).splitlines()[0][:200] if str(exc) else ""
    if result.status != DONE:
        result.last_model = result.last_forecast = None
    return result


def _record(
    result: CandidateResult,
    model: ForecastPythonModel,
    forecast: np.ndarray,
    metrics: dict[str, float],
    fit_seconds: float,
) -> None:
    result.fit_seconds += fit_seconds
    result.windows += len(forecast)
    result.fold_metrics.append(metrics)
    result.last_model, result.last_forecast = model, forecast


def _period_risks(
    model: ForecastPythonModel, fold: CvFold, deadline: float | None
) -> pd.DataFrame | None:
    """The model's raw risks of the fold's period; None when the deadline passes first."""
    from models.forecasting.calibration import period_risks

    if fold.period is None:
        return pd.DataFrame(columns=["battery_id", "date", "raw_risk"])
    check = None if deadline is None else (lambda: time.monotonic() >= deadline)
    return period_risks(model, fold.period, check)


def _share_deadline(deadline: float | None, pending: Sequence[Candidate]) -> float | None:
    """The deadline of `pending[0]`: an equal share of the budget left among the candidates
    still to run that are not baselines (baselines ignore deadlines)."""
    contenders = sum(not c.baseline for c in pending)
    if deadline is None or contenders <= 1:
        return deadline
    now = time.monotonic()
    return min(deadline, now + max(0.0, deadline - now) / contenders)


def _out_of_time(deadline: float | None, fold_seconds: list[float]) -> bool:
    """Whether the budget is spent, or the next fold (as long as the last) would overrun it."""
    if deadline is None:
        return False
    now = time.monotonic()
    expected = fold_seconds[-1] if fold_seconds else 0.0
    return now >= deadline or now + expected > deadline


def _forecast(
    model: ForecastPythonModel, inputs: pd.DataFrame, deadline: float | None
) -> np.ndarray | None:
    """The model's (n, horizon) forecast of `inputs`, or None when the deadline passes first."""
    rows = coerce_model_input(inputs)
    parts = []
    for start in range(0, len(rows), PREDICT_CHUNK):
        if deadline is not None and time.monotonic() >= deadline:
            return None
        chunk = rows.iloc[start : start + PREDICT_CHUNK].reset_index(drop=True)
        parts.append(np.asarray(model.forecast(chunk), dtype=np.float64))
    return np.concatenate(parts) if parts else np.zeros((0, model.horizon_days))


def run_sweep(
    candidates: Sequence[Candidate],
    folds: Sequence[CvFold],
    *,
    time_budget_s: float | None,
    metric_threshold: float | None,
    started: float | None = None,
    seed: int = 0,
    on_fold: OnFold | None = None,
    on_candidate: OnCandidate | None = None,
    judge: AlertJudge | None = None,
) -> SweepResult:
    """Evaluate `candidates` in order on `folds` under the exit criteria (module docstring).

    `started` (a `time.monotonic()` value, default now) is when the budget began, so data
    loading and fold building can count against it.
    """
    if not candidates:
        raise AutomlError("There are no candidates to try; name at least one.")
    if not folds:
        raise AutomlError("There are no cross-validation folds to evaluate on.")
    started = time.monotonic() if started is None else started
    deadline = None if time_budget_s is None else started + time_budget_s
    results: list[CandidateResult] = []
    stopped: str | None = None
    best: float = np.inf
    for position, candidate in enumerate(candidates):
        if stopped is not None and not candidate.baseline:
            results.append(CandidateResult(candidate=candidate, reason=stopped))
            continue
        share = _share_deadline(deadline, candidates[position:])
        result = evaluate_candidate(
            candidate, folds, share, seed=seed, on_fold=on_fold, judge=judge
        )
        results.append(result)
        if on_candidate is not None:
            on_candidate(result)
        if result.ranked:
            best = min(best, result.mean_metrics()[PRIMARY_METRIC])
        if stopped is None:
            following = candidates[position + 1] if position + 1 < len(candidates) else None
            stopped = _exit_reason(result, following, best, metric_threshold, deadline)
    cut = sum(r.status == STOPPED for r in results)
    reason = stopped or "all candidates ran" + (
        f"; {cut} stopped at their share of the time budget" if cut else ""
    )
    seconds = time.monotonic() - started
    log.info("Sweep ended (%s) after %.1fs", reason, seconds)
    target = None if judge is None else judge.target_precision
    return SweepResult(results, reason, seconds, alert_precision=target)


def _exit_reason(
    result: CandidateResult,
    following: Candidate | None,
    best: float,
    threshold: float | None,
    deadline: float | None,
) -> str | None:
    """Why no further candidate should start after `result`, or None to go on."""
    if result.status == STOPPED and (deadline is None or time.monotonic() >= deadline):
        return "time budget spent"  # else it spent only its share: the next one starts
    if following is None or following.baseline:
        return None  # the baselines always all run
    if threshold is not None and best <= threshold:
        return f"metric threshold {threshold:g} reached"
    if deadline is not None and time.monotonic() >= deadline:
        return "time budget spent"
    return None


# Alert quality of a candidate (its `alerts`) -> leaderboard column.
ALERT_COLUMNS = {
    "recall": "alert_recall",
    "precision": "alert_precision",
    "median_lead_days": "alert_lead_days",
    "ece": "risk_ece",
}
LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "rank",
    "candidate",
    "library",
    "status",
    *(f"cv_{m}" for m in METRICS),
    *ALERT_COLUMNS.values(),
    "folds_done",
    "fit_seconds",
    "predict_s_per_1k",
    "baseline",
    "description",
)


def leaderboard(sweep: SweepResult) -> pd.DataFrame:
    """One row per candidate, ranked as `SweepResult.best` chooses (alerts, then NRMSE);
    unfinished ones last, without a rank."""
    rows = []
    for order, result in enumerate(sweep.results):
        means = result.mean_metrics()
        status = result.status if not result.reason else f"{result.status}: {result.reason}"
        rows.append(
            {
                "candidate": result.name,
                "library": result.candidate.library,
                "status": status,
                **{f"cv_{m}": means[m] for m in METRICS},
                **{c: result.alerts.get(k, np.nan) for k, c in ALERT_COLUMNS.items()},
                "folds_done": len(result.fold_metrics),
                "fit_seconds": round(result.fit_seconds, 2),
                "predict_s_per_1k": round(result.predict_s_per_1k, 3),
                "baseline": result.candidate.baseline,
                "description": result.candidate.description,
                "_ranked": result.ranked,
                "_key": (
                    selection_key(result, sweep.alert_precision) if result.ranked else (2, order)
                ),
            }
        )
    frame = pd.DataFrame(rows)
    frame = frame.iloc[sorted(range(len(frame)), key=lambda i: frame["_key"].iloc[i])]
    frame = frame.reset_index(drop=True)
    ranks = np.where(frame["_ranked"], np.arange(1, len(frame) + 1), 0)
    frame.insert(0, "rank", pd.array(np.where(ranks > 0, ranks, None), dtype="Int64"))
    return frame[list(LEADERBOARD_COLUMNS)]


def parse_duration(text: str) -> float:
    """Seconds in '600', '600s', '10m', '1.5h'; raises AutomlError for anything else."""
    value = str(text).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    factor = units.get(value[-1:], None)
    number = value[:-1] if factor is not None else value
    try:
        seconds = float(number) * (factor or 1.0)
    except ValueError:
        raise AutomlError(
            f"Time budget {text!r} is not a duration; use seconds (600), or 600s, 10m, 1h."
        ) from None
    if not np.isfinite(seconds) or seconds <= 0:
        raise AutomlError(f"Time budget {text!r} must be more than 0.")
    return seconds


def prepare_readings(
    readings: pd.DataFrame, target: str, time_column: str, series_column: str
) -> pd.DataFrame:
    """Readings with the chosen target, time and series columns in the contract's names."""
    roles = {target: "daily_cycles_used", time_column: "date", series_column: "battery_id"}
    missing = [c for c in roles if c not in readings.columns]
    if missing:
        raise AutomlError(
            f"The data has no column(s) {', '.join(missing)}; choose --target, --time-column "
            f"and --series-column from {', '.join(map(str, readings.columns))}."
        )
    renamed = {k: v for k, v in roles.items() if k != v}
    # A role taken from another column replaces the contract column of that name.
    frame = readings.drop(columns=[v for v in renamed.values() if v in readings.columns])
    frame = frame.rename(columns=renamed)
    frame["battery_id"] = frame["battery_id"].astype(str)
    frame["daily_cycles_used"] = pd.to_numeric(frame["daily_cycles_used"], errors="coerce")
    if frame["daily_cycles_used"].isna().all():
        raise AutomlError(f"The target column {target} holds no numbers.")
    return frame.dropna(subset=["daily_cycles_used"]).reset_index(drop=True)


def result_params(result: CandidateResult) -> dict[str, Any]:
    """A candidate's parameters for its MLflow child run."""
    return {
        "candidate": result.name,
        "library": result.candidate.library,
        "baseline": result.candidate.baseline,
        **{f"param_{k}": v for k, v in result.candidate.params.items()},
    }
