"""The model card's text: Markdown for people who are not data scientists (pure: no MLflow).

What the forecaster predicts, from what, how good it is against simple rules, what drives
it, how alerts follow from it, what it is for and where it falls short.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import PitstopError
from models.forecasting.features import HEALTH_HISTORY_SUFFIX

CARD_FILE = "model_card.md"
# The registry's SQL stores hold a version description in a VARCHAR(5000).
DESCRIPTION_LIMIT = 5000
LAB_NRMSE_BAR = 0.1355
# Plain-language names of the metrics, in the order the card shows them.
_METRICS: tuple[tuple[str, str], ...] = (
    ("mae", "Typical daily error (MAE, cycles per day)"),
    ("rmse", "Error that punishes big misses (RMSE, cycles per day)"),
    ("nrmse", f"Error relative to the range of daily use (NRMSE; the lab's bar: {LAB_NRMSE_BAR})"),
    ("smape", "Error in percent of the day's use (sMAPE, %)"),
    ("mase", "Error relative to a typical week-to-week change (MASE)"),
)
# Plain-language names of the health signals a model may look at.
HEALTH_LABELS = {
    "cranking_voltage_min": "the lowest voltage while starting the engine",
    "resting_voltage": "the voltage at rest",
    "charge_acceptance": "how well the battery takes a charge",
    "ambient_temp_c": "the outside temperature",
}
BASELINE_NOTES = {
    "seasonal naive": "repeats each battery's last week, day by day",
    "weekly baseline": (
        "repeats each weekday's share of the battery's last eight weeks at the level of its "
        "last two"
    ),
}


class ModelCardError(PitstopError, ValueError):
    """A model card that cannot be written; the message says what is missing."""


def render_model_card(
    *,
    model_name: str,
    version: str,
    run_id: str,
    description: str,
    training_data: Mapping[str, Any],
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    limits: Sequence[str],
    explanation_png: str | None = None,
    importance: Mapping[str, float] | None = None,
    window_days: int = 60,
    horizon_days: int = 30,
    alert_within_days: int = 30,
    extra_inputs: Sequence[str] = (),
    alerts: Mapping[str, Any] | None = None,
) -> str:
    """The model card as Markdown (pure: no MLflow).

    `extra_inputs` are the optional health signal histories the model reads; `alerts` (see
    `_alerts_section`) describes its failure risk and alerts beside the cycle rule's.
    """
    if "nrmse" not in metrics:
        raise ModelCardError("A model card needs the model's holdout 'nrmse' metric.")
    written = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Model card: {model_name}, version {version}",
        "",
        f"> Forecasts how many charge cycles a car battery will use on each of the next "
        f"{horizon_days} days, so Pitstop can warn the owner before the battery reaches the "
        "number of cycles it is rated for.",
        "",
        "| | |",
        "|---|---|",
        f"| Model | `{model_name}` version {version} |",
        f"| What it is | {description} |",
        f"| Trained on | {_data_summary(training_data)} |",
        f"| Training run | `{run_id}` (card written {written}) |",
        f"| In short | {_verdict(metrics, baselines)} |",
        "",
        "## What it predicts",
        "",
        f"Every day, for every battery: the cycles it will use on each of the next "
        f"{horizon_days} days (a list of {horizon_days} numbers). Added to the cycles the "
        "battery has used so far, they show when it will reach its rated cycles.",
        "",
        "## What it looks at",
        "",
        f"- The battery's daily cycle use over the last {window_days} days at most, oldest "
        "first. A day without a reading counts as a day the car was parked (0 cycles).",
        "- The cycles used in the battery's life so far, the cycles it is rated for, and its "
        "age in days.",
        *_health_inputs_lines(extra_inputs),
        "",
        "## Training data and period",
        "",
        *_training_section(training_data, horizon_days),
        "",
        "## How good it is",
        "",
        *_metrics_table(metrics, baselines),
        "",
        *[f"- *{name}* {BASELINE_NOTES[name]}." for name in baselines if name in BASELINE_NOTES],
        "- A useful model beats both simple rules; lower is better on every line.",
        "",
        "## What drives its forecasts",
        "",
        *_drivers_section(importance, explanation_png),
        "",
        "## How alerts are derived",
        "",
        *_alerts_section(alerts, alert_within_days),
        "",
        "## Intended use",
        "",
        "- Deciding which batteries to check or replace in the coming month, and reminding "
        "owners to book a service in time.",
        "- Not for warranty or safety decisions on its own, and not for batteries of a fleet "
        "it was not trained on without retraining first.",
        "",
        "## Limits",
        "",
        *[f"- {limit}" for limit in limits],
        "",
    ]
    return "\n".join(lines)


def _threshold_reason(alerts: Mapping[str, Any], within: int) -> str:
    """Why the alert threshold is what it is: the validation period's choice, or the target
    precision itself when that period had too few verifiable first alerts to show it."""
    target = f"{100 * alerts['target_precision']:.0f}%"
    if alerts.get("raised_from") is None:
        return (
            f": the lowest level at which at least {target} of the first alerts of the "
            f"validation period were right (the battery failed within {within} days)."
        )
    return (
        f", the target precision itself: the validation period had only "
        f"{alerts.get('verifiable_alerts', 0)} first alerts whose outcome it could tell, too "
        f"few to show a {target} precision (its own choice, {alerts['raised_from']:.3f}, had "
        f"no false alert among them by luck as much as by skill). On a calibrated risk, an "
        f"alert at risk r is right about r of the time."
    )


def _alerts_section(alerts: Mapping[str, Any] | None, within: int) -> list[str]:
    """How alerts follow: from the calibrated risk when the model has one, with its
    threshold, calibration, reliability plot and alert quality beside the cycle rule's
    (`alerts`: threshold, target_precision, calibration, ece, period, reliability_png, and
    `rows`: name -> recall, precision, median_lead_days); else the forecast's running sum."""
    if not alerts:
        return [
            f"For each new reading, the forecast days are added one by one to the cycles "
            f"already used. If the total reaches the battery's rated cycles within {within} "
            "days, the battery gets an alert whose predicted failure date is the first day the "
            "total reaches the rating. A battery has at most one open alert; each alert "
            "records this model's name and version.",
        ]
    lines = [
        f"For each new reading the model also gives the chance that the battery reaches its "
        f"rated cycles within {within} days (its *failure risk*), read from its forecast of "
        f"the total cycles of those days and calibrated on readings it had not learnt from "
        f"({alerts.get('calibration', 'Platt')} scaling). An alert opens when the risk reaches "
        f"**{alerts['threshold']:.3f}**{_threshold_reason(alerts, within)} A battery has at "
        "most one open alert; each alert records the risk and this model's name and version.",
        "",
        f"Expected calibration error of the risk: {_number(alerts.get('ece'))} (0 is "
        "perfect: among readings given a 20% risk, 20% failed in time).",
    ]
    rows = alerts.get("rows") or {}
    if rows:
        lines += [
            "",
            f"Alerts on {alerts.get('period', 'the validation period')} -- each half of the "
            "batteries alerted with the threshold (or the rule's N and T) chosen on the other "
            "half, so neither judges its own data:",
            "",
            "| | batteries alerted before they failed (recall) | alerts that were right "
            "(precision) | median warning (days) |",
            "|---|---:|---:|---:|",
        ]
        for name, values in rows.items():
            lines.append(
                f"| {name} | {_share(values.get('recall'))} | "
                f"{_share(values.get('precision'))} | {_number(values.get('median_lead_days'))} |"
            )
    if alerts.get("reliability_png"):
        lines += ["", f"![How well the risk is calibrated]({alerts['reliability_png']})"]
    return lines


def _share(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f}%"


def registry_description(card: str, run_id: str) -> str:
    """The card as a registry description: no image, and shortened to fit the store."""
    keep = [line for line in card.splitlines() if not line.startswith("![")]
    text = "\n".join(keep)
    if len(text) <= DESCRIPTION_LIMIT:
        return text
    pointer = f"\n\n*(Shortened: the full card is `{CARD_FILE}` in run `{run_id}`.)*"
    cut = text[: DESCRIPTION_LIMIT - len(pointer)]
    # End at the last whole section or line, never mid-word.
    cut = cut[: cut.rfind("\n## ")] if "\n## " in cut else cut[: cut.rfind("\n")]
    return cut + pointer


def _health_inputs_lines(extra_inputs: Sequence[str]) -> list[str]:
    """The card's lines on health signals: which ones it reads, or that it reads none."""
    if not extra_inputs:
        return ["- Nothing else: not the owner's plans, the weather or the calendar of holidays."]
    signals = [name.removesuffix(HEALTH_HISTORY_SUFFIX) for name in extra_inputs]
    described = "; ".join(
        f"{HEALTH_LABELS.get(s, s.replace('_', ' '))} (`{name}`)"
        for s, name in zip(signals, extra_inputs, strict=True)
    )
    return [
        f"- The battery's health signals, day by day over the same days: {described}. "
        "They are optional: a day or a battery without them counts as an average one.",
        "- Nothing else: not the owner's plans, the weather to come or the calendar of holidays.",
    ]


def _data_summary(data: Mapping[str, Any]) -> str:
    parts = []
    if "batteries" in data:
        parts.append(f"{int(data['batteries']):,} batteries")
    if "rows" in data:
        parts.append(f"{int(data['rows']):,} daily readings")
    if data.get("first_date") and data.get("last_date"):
        parts.append(f"{data['first_date']} to {data['last_date']}")
    if data.get("source"):
        parts.append(f"from {data['source']}")
    return ", ".join(parts) or "not recorded"


def _training_section(data: Mapping[str, Any], horizon_days: int) -> list[str]:
    lines = [f"- Trained on {_data_summary(data)}."]
    if data.get("holdout_first_date"):
        rows = f"{int(data['holdout_rows']):,} readings, " if "holdout_rows" in data else ""
        lines.append(
            f"- Kept aside for testing: each battery's last {horizon_days} days ({rows}"
            f"between {data['holdout_first_date']} and {data['holdout_last_date']}). The model "
            "never saw them while learning; every number below is measured on them."
        )
    return lines


def _metrics_table(
    metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]
) -> list[str]:
    names = list(baselines)
    lines = [
        "| measure (lower is better) | this model | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for key, label in _METRICS:
        if key not in metrics:
            continue
        cells = [_number(metrics.get(key))] + [_number(baselines[n].get(key)) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _number(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def _verdict(metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]) -> str:
    """One sentence: how the model's NRMSE compares with each baseline's."""
    ours = metrics["nrmse"]
    parts = []
    for name, values in baselines.items():
        theirs = values.get("nrmse")
        if theirs is None or not np.isfinite(theirs) or theirs <= 0:
            continue
        change = 100.0 * (1.0 - ours / theirs)
        word = "better" if change >= 0 else "worse"
        parts.append(f"{abs(change):.1f}% {word} than {name}")
    bar = "meets" if ours <= LAB_NRMSE_BAR else "misses"
    summary = f"NRMSE {ours:.4f} on held-out days ({bar} the lab's bar of {LAB_NRMSE_BAR})"
    return summary + ("; " + ", ".join(parts) if parts else "") + "."


def _drivers_section(importance: Mapping[str, float] | None, png: str | None) -> list[str]:
    if not importance:
        return ["Not measured for this version."]
    lines = [
        "Each kind of input was scrambled between batteries in turn and the 30-day forecast "
        "redone; the more the error grows, the more the model relies on that input.",
        "",
    ]
    for label, growth in sorted(importance.items(), key=lambda item: -item[1]):
        if growth >= 5:
            meaning = "relies on it"
        elif growth >= 1:
            meaning = "uses it a little"
        else:
            meaning = "barely uses it"
        lines.append(f"- {label}: error {growth:+.1f}% when scrambled ({meaning}).")
    if png:
        lines += ["", f"![What drives the forecast]({png})"]
    return lines
