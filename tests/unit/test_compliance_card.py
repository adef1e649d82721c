"""The compliance model card's text: per-class metrics, the candidates, failure cases."""

from __future__ import annotations

import pandas as pd
import pytest

from models.compliance.baseline import PLAIN, fit_ngram_classifier
from models.reporting.card_text import ModelCardError
from models.reporting.compliance_card import (
    YEAR_READER_LIMIT,
    failure_cases,
    render_compliance_card,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def classifier():
    texts = ["iron pump", "steel pump", "plastic tray", "alu tray"] * 10
    return fit_ngram_classifier(texts, [True, False, True, False] * 10, PLAIN)


def test_failure_cases_are_the_wrong_ones_most_confident_first(classifier) -> None:
    frame = pd.DataFrame(
        {
            "text": ["iron pump", "steel pump", "iron tray", "plastic tray"],
            "non_compliant": [False, False, True, True],  # the first is labelled wrongly
        }
    )
    wrong = failure_cases(classifier, frame)
    assert wrong["text"].tolist() == ["iron pump"] and wrong.attrs["total"] == 4
    assert wrong["probability"].iloc[0] > 0.5


def test_card_sections_and_tables(classifier) -> None:
    metrics = {"accuracy": 0.99, "recall_non_compliant": 0.98, "recall_compliant": 1.0}
    rows = pd.DataFrame(
        [
            {"candidate": "tfidf_year", "chosen": True, "val_loss": 0.02, "eval_accuracy": 0.99},
            {"candidate": "network", "chosen": False, "val_loss": 0.03, "eval_accuracy": 0.98},
        ]
    )
    none_wrong = failure_cases(
        classifier, pd.DataFrame({"text": ["iron pump"], "non_compliant": [True]})
    )
    card = render_compliance_card(
        model_name="component-compliance",
        version="3",
        run_id="abc",
        chosen="tfidf_year",
        candidates={"tfidf_year": "n-grams and the year"},
        data={"source": "notes.csv"},
        sets={"held-out notes": {"notes": 1200, **metrics}},
        candidate_rows=rows,
        failures={"held-out notes": none_wrong},
    )
    assert card.startswith("# Model card: component-compliance, version 3")
    assert "| held-out notes | 1,200 | 0.9900 | 0.9800 | 1.0000 |" in card
    assert "| **tfidf_year** (chosen) | 0.0200 | 0.9900 |" in card
    assert "| candidate | validation log loss | held-out accuracy | fit s |" in card
    assert "held-out notes: none of 1 notes." in card
    assert YEAR_READER_LIMIT in card and "- source: notes.csv" in card
    with pytest.raises(ModelCardError, match="metrics"):
        render_compliance_card(
            model_name="m", version="1", run_id="r", chosen="x", candidates={}, data={},
            sets={}, candidate_rows=rows, failures={},
        )  # fmt: skip
