"""A model card for every registered compliance-classifier version: what it reads, what it
was trained on, how good it is for each class, how it compares with the other candidates,
and the notes it gets wrong -- so a reader sees its failure cases, not only its averages.

Markdown, logged as the run's `model_card.md` and set as the version's description.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from models.reporting.card_text import CARD_FILE, ModelCardError, registry_description

log = logging.getLogger(__name__)

MAX_FAILURES = 8  # failure cases shown per set
_CLASS_METRICS = (
    ("accuracy", "accuracy"),
    ("recall_non_compliant", "recall, non-compliant"),
    ("recall_compliant", "recall, compliant"),
    ("precision_non_compliant", "precision, non-compliant"),
    ("precision_compliant", "precision, compliant"),
    ("loss", "log loss"),
)
LIMITS: tuple[str, ...] = (
    "It applies one regulation: made before 1995, or in fair or poor condition, or made with "
    "plastic or iron. Another rule needs retraining on notes labelled by it "
    "(`pitstop train compliance --data`).",
    "A note that leaves the year, condition or material out is judged on what it states: "
    "an unstated fact never counts against the component.",
    "A word for a material or a condition it never saw in training (a trade name of a "
    "plastic, a workshop's own slang) means nothing to it.",
    "Its figures come from held-out notes (unseen sentence shapes and misspellings, and any "
    "evaluation-only set listed above); another workshop's notes may read differently.",
)
YEAR_READER_LIMIT = (
    "Two-digit years are read as 1930-2029, and a bare two-digit number counts as a year "
    "only after a word such as 'mfd', 'yr' or 'built'."
)
_SET_TITLES = {"val": "validation", "eval": "held-out"}


def render_compliance_card(
    *,
    model_name: str,
    version: str,
    run_id: str,
    chosen: str,
    candidates: Mapping[str, str],
    data: Mapping[str, Any],
    sets: Mapping[str, Mapping[str, float]],
    candidate_rows: pd.DataFrame,
    failures: Mapping[str, pd.DataFrame],
) -> str:
    """The card as Markdown (pure). `sets` maps a set's title to the chosen model's metrics
    on it; `failures` a held-out set's title to its misclassified notes (text, label,
    probability)."""
    if not sets:
        raise ModelCardError("A compliance model card needs the model's metrics on some notes.")
    written = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Model card: {model_name}, version {version}",
        "",
        "> Reads a technician's free-text note about a car component and gives the "
        "probability that the component is out of compliance. A note at or above 0.5 "
        "raises a compliance alert for the car.",
        "",
        f"Written {written} from MLflow run `{run_id}`.",
        "",
        "## What it is",
        "",
        f"- **{chosen}**: {candidates.get(chosen, chosen)}; chosen over the other candidates "
        "for the lowest log loss on the validation notes.",
        "- Input: the note's text, as written. Output: a probability between 0 and 1.",
        "",
        "## Data",
        "",
        *[f"- {key}: {value}" for key, value in data.items()],
        "",
        "## How good it is, class by class",
        "",
        _table(
            ["notes", *(label for _, label in _CLASS_METRICS)],
            {title: [_number(m.get(k)) for k, _ in _CLASS_METRICS] for title, m in sets.items()},
            first="set",
            counts={title: m.get("notes") for title, m in sets.items()},
        ),
        "",
        "## Against the other candidates",
        "",
        _candidate_table(candidate_rows),
        "",
        "## Known failure cases",
        "",
    ]
    for title, frame in failures.items():
        lines += _failure_lines(title, frame)
    limits = [*LIMITS, YEAR_READER_LIMIT] if chosen == "tfidf_year" else list(LIMITS)
    lines += ["## Limits", "", *[f"- {limit}" for limit in limits], ""]
    return "\n".join(lines)


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and pd.notna(value) else ""


def _table(
    columns: list[str],
    rows: Mapping[str, list[str]],
    first: str,
    counts: Mapping[str, Any] | None = None,
) -> str:
    head = f"| {first} | " + " | ".join(columns) + " |"
    rule = "|" + "---|" * (len(columns) + 1)
    body = []
    for title, values in rows.items():
        count = [f"{int(counts[title]):,}"] if counts is not None and counts.get(title) else []
        body.append(f"| {title} | " + " | ".join([*count, *values]) + " |")
    return "\n".join([head, rule, *body])


def _candidate_table(rows: pd.DataFrame) -> str:
    sets = [c.removesuffix("_accuracy") for c in rows.columns if c.endswith("_accuracy")]
    columns = ["validation log loss", *(f"{_SET_TITLES.get(s, s)} accuracy" for s in sets), "fit s"]
    table = {}
    for row in rows.to_dict("records"):
        name = f"**{row['candidate']}** (chosen)" if row["chosen"] else str(row["candidate"])
        values = [_number(row.get("val_loss"))]
        values += [_number(row.get(f"{s}_accuracy")) for s in sets]
        values.append(_number(row.get("fit_seconds"), 1))
        table[name] = values
    return _table(columns, table, first="candidate")


def _failure_lines(title: str, frame: pd.DataFrame) -> list[str]:
    if frame.attrs.get("total") is not None and frame.empty:
        return [f"{title}: none of {frame.attrs['total']:,} notes.", ""]
    lines = [f"{title}: {len(frame):,} wrong of {frame.attrs.get('total', '?'):,}; the first "
             f"{min(len(frame), MAX_FAILURES)}:", "", "| note | truth | probability |",
             "|---|---|---|"]  # fmt: skip
    for row in frame.head(MAX_FAILURES).itertuples(index=False):
        text = str(row.text).replace("|", "/").replace("\n", " ")
        text = text if len(text) <= 140 else text[:137] + "..."
        truth = "non-compliant" if row.non_compliant else "compliant"
        lines.append(f"| {text} | {truth} | {row.probability:.3f} |")
    return [*lines, ""]


def failure_cases(classifier: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """The notes of `frame` the classifier gets wrong, most confidently wrong first; the
    number of notes scored is in `.attrs['total']`."""
    from models.compliance.classifier import THRESHOLD

    probs = classifier.predict_proba(frame["text"].tolist())
    scored = frame[["text", "non_compliant"]].assign(probability=probs)
    wrong = scored[(scored["probability"] >= THRESHOLD) != scored["non_compliant"].astype(bool)]
    margin = (wrong["probability"] - THRESHOLD).abs()
    out = wrong.assign(margin=margin).sort_values("margin", ascending=False).drop(columns="margin")
    out = out.reset_index(drop=True)
    out.attrs["total"] = len(frame)
    return out


def log_compliance_card(
    *,
    model_name: str,
    version: str,
    run_id: str,
    fit: Any,
    notes: Any,
    metrics: Mapping[str, float],
    candidates: Mapping[str, str],
) -> str:
    """Write the card of a registered version from its fit (`ComplianceFit`) and notes
    (`NoteSets`), log it as the run's `model_card.md`, make it the version's description and
    tag the version with the chosen kind. Returns the Markdown."""
    from mlflow.tracking import MlflowClient

    from models.training.compliance import candidate_table, metric_prefix

    chosen = fit.chosen
    titled = {"holdout": ("held-out notes", notes.holdout, "eval")}
    for name, frame in notes.extra.items():
        titled[name] = (f"{name} (evaluation only)", frame, metric_prefix(name))
    sets = {"validation notes": {"notes": len(notes.val), **fit.val_metrics[chosen]}}
    for title, frame, prefix in titled.values():
        found = {k[len(prefix) + 1 :]: v for k, v in metrics.items() if k.startswith(f"{prefix}_")}
        sets[title] = {"notes": len(frame), **found}
    failures = {title: failure_cases(fit.classifier, frame) for title, frame, _ in titled.values()}
    data = {
        "source": notes.source,
        "notes": (
            f"{len(notes.train):,} training, {len(notes.val):,} validation, "
            f"{len(notes.holdout):,} held out"
        ),
        "non-compliant share": (
            f"{notes.train['non_compliant'].mean():.0%} training, "
            f"{notes.holdout['non_compliant'].mean():.0%} held out"
        ),
        **{k.replace("_", " "): v for k, v in notes.params.items()},
    }
    card = render_compliance_card(
        model_name=model_name,
        version=version,
        run_id=run_id,
        chosen=chosen,
        candidates=candidates,
        data=data,
        sets=sets,
        candidate_rows=candidate_table(dict(metrics), fit),
        failures=failures,
    )
    client = MlflowClient()
    client.log_text(run_id, card, CARD_FILE)
    client.update_model_version(model_name, version, registry_description(card, run_id))
    client.set_model_version_tag(model_name, version, "model_kind", f"compliance-{chosen}")
    log.info("Model card of %s version %s logged to run %s", model_name, version, run_id)
    return card
