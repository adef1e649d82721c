"""Compliance classifier: tokenizer, network shapes, persistence, metrics, input checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from models.compliance.batch import classify_lines
from models.compliance.classifier import (
    ComplianceNet,
    ComplianceSpec,
    classification_metrics,
    fit_classifier,
    load_classifier,
    predict_proba,
    save_classifier,
)
from models.compliance.pyfunc import ComplianceInputError, note_texts
from models.compliance.text import MAX_NOTE_TEXT_BYTES, ComplianceModelError, note_text_problem
from models.compliance.tokenizer import NUM, NUM_FEATURES, UNK, Tokenizer, number_features, tokenize

pytestmark = pytest.mark.unit

NOTES = [
    "Steel brake caliper manufactured in 1995 in fair condition.",
    "mfd 1993 cast iron water pump, cond. good",
    "ALTERNATOR (ALUMINIUM), BUILT 2004, EXCELLENT",
    "odometer 84,210 km; fuel tank, plastic, yr 2011, good condition",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.fit(NOTES * 2)


def test_tokenize_ignores_case_and_punctuation_and_keeps_numbers_whole() -> None:
    assert tokenize("MFD.1993, Cast-Iron!") == ["mfd", "1993", "cast", "iron"]
    assert tokenize("odometer 84,210 km") == ["odometer", "84,210", "km"]
    assert tokenize("cond.: FAIR") == tokenize("cond fair")


def test_number_features_expose_digits_by_position() -> None:
    year, mileage = number_features("1994"), number_features("84,210")
    assert year.shape == (NUM_FEATURES,) and year[0] == 1.0
    assert year[1 + 3] == 1.0  # four digits
    assert [int(np.argmax(year[8 + 10 * p : 18 + 10 * p])) for p in range(4)] == [1, 9, 9, 4]
    assert mileage[1 + 4] == 1.0  # five digits: the comma is grouping, not a decimal point
    assert not np.array_equal(number_features("1994"), number_features("1995"))


def test_unknown_spellings_share_ngrams_with_known_words(tokenizer: Tokenizer) -> None:
    word, grams, _ = tokenizer.describe("condition")
    unknown, unknown_grams, _ = tokenizer.describe("conditon")  # a typo
    assert word > NUM and unknown == UNK
    assert len(set(grams[grams > 0]) & set(unknown_grams[unknown_grams > 0])) >= 5
    number, number_grams, features = tokenizer.describe("1993")
    assert number == NUM and not number_grams.any() and features[0] == 1.0


def test_encode_pads_and_shares_one_type_per_token(tokenizer: Tokenizer) -> None:
    encoded = tokenizer.encode(["good good good", "fair"])
    assert encoded.index.shape == (2, 3)
    assert encoded.index[0].tolist() == [1, 1, 1] and encoded.index[1].tolist() == [2, 0, 0]
    assert encoded.lengths.tolist() == [3, 1]
    subset = encoded.subset(np.array([1]))
    assert subset.index.tolist() == [[1]] and len(subset.type_words) == 2


def test_tokenizer_round_trips_through_json(tokenizer: Tokenizer) -> None:
    again = Tokenizer.from_json(tokenizer.to_json())
    assert again.vocab == tokenizer.vocab
    first, second = tokenizer.encode(NOTES), again.encode(NOTES)
    assert np.array_equal(first.index, second.index)
    assert np.array_equal(first.type_ngrams, second.type_ngrams)


def test_vocabulary_must_start_with_the_special_tokens() -> None:
    with pytest.raises(ComplianceModelError, match="<pad>"):
        Tokenizer(["good", "fair"])


def test_network_gives_one_logit_per_note_whatever_the_batch(tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    model = ComplianceNet(ComplianceSpec(vocab_size=len(tokenizer.vocab))).eval()
    alone = predict_proba(model, tokenizer, NOTES[:1])
    together = predict_proba(model, tokenizer, NOTES + ["a much longer note " * 20])
    assert together.shape == (5,) and ((together > 0) & (together < 1)).all()
    # Padding is masked: a note scores the same alone or beside a long one.
    assert alone[0] == pytest.approx(together[0], abs=1e-6)
    assert predict_proba(model, tokenizer, []).shape == (0,)


def test_save_and_load_give_the_same_predictions(tokenizer: Tokenizer, tmp_path) -> None:
    model = ComplianceNet(ComplianceSpec(vocab_size=len(tokenizer.vocab))).eval()
    save_classifier(model, tokenizer, tmp_path / "clf")
    loaded, loaded_tokenizer = load_classifier(tmp_path / "clf")
    assert np.allclose(
        predict_proba(model, tokenizer, NOTES), predict_proba(loaded, loaded_tokenizer, NOTES)
    )
    with pytest.raises(ComplianceModelError, match="no saved classifier"):
        load_classifier(tmp_path / "nothing")


def test_fit_learns_a_tiny_separable_set() -> None:
    texts = ["steel part mfd 2005 good", "iron part mfd 2005 good"] * 60
    labels = [False, True] * 60
    fit = fit_classifier(texts, labels, texts[:20], labels[:20], epochs=4, batch_size=16)
    assert len(fit.history) == 4 and fit.history[-1].val_accuracy == 1.0
    assert fit.history[-1].lr < fit.history[0].lr  # annealed


def test_fit_refuses_bad_inputs() -> None:
    with pytest.raises(ComplianceModelError, match="label"):
        fit_classifier(["a"], [True, False], ["a"], [True])
    with pytest.raises(ComplianceModelError, match="at least 1"):
        fit_classifier(["a"], [True], ["a"], [True], epochs=0)
    with pytest.raises(ComplianceModelError, match="empty"):
        fit_classifier([], [], ["a"], [True])


def test_metrics_per_class() -> None:
    metrics = classification_metrics([True, True, False, False], np.array([0.9, 0.2, 0.1, 0.6]))
    assert metrics["accuracy"] == 0.5
    assert metrics["recall_non_compliant"] == 0.5 and metrics["precision_non_compliant"] == 0.5
    assert metrics["recall_compliant"] == 0.5 and metrics["precision_compliant"] == 0.5
    with pytest.raises(ComplianceModelError):
        classification_metrics([True], np.array([0.1, 0.2]))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (42, "must be a string"),
        ("x" * (MAX_NOTE_TEXT_BYTES + 1), "too long"),
        ("steel \x00\x01\x02 caliper", "not plain text"),
        ("\ufffd\ufffd caliper", "not plain text"),
        ("1993 / 2004 -- 55", "no words"),
    ],
)
def test_unreadable_note_texts_are_named(text: object, problem: str) -> None:
    assert problem in note_text_problem(text)


def test_readable_note_text_passes() -> None:
    assert note_text_problem("Stahl-Bremssattel, Baujahr 1993,\tZustand gut\n") is None


def test_pyfunc_input_must_have_a_text_column() -> None:
    assert note_texts(pd.DataFrame({"text": ["a"], "note_id": ["n"]})) == ["a"]
    assert note_texts(["a", "b"]) == ["a", "b"]
    with pytest.raises(ComplianceInputError, match="'text'"):
        note_texts(pd.DataFrame({"note": ["a"]}))
    with pytest.raises(ComplianceInputError, match="Row 1"):
        note_texts(pd.DataFrame({"text": ["a", None]}))


def test_classify_lines_reports_bad_lines_and_keeps_order() -> None:
    lines = [
        json.dumps({"note_id": "n1", "text": "iron pump", "car_id": "C1"}),
        "not json",
        "",
        json.dumps([1, 2]),
        json.dumps({"note_id": "n4"}),
        json.dumps({"note_id": "n5", "text": ""}),
        json.dumps({"text": "steel pump"}),
        json.dumps({"note_id": 6, "text": "steel pump"}),
    ]
    seen = []

    def predict(texts):
        seen.append(list(texts))
        return np.array([0.9 if "iron" in t else 0.1 for t in texts])

    out = list(classify_lines(lines, predict))
    assert out[0] == {"note_id": "n1", "non_compliant": True, "probability": 0.9}
    assert out[1] == {"line": 2, "note_id": None, "error": "not JSON"}
    assert out[2]["error"].startswith("not a JSON object")
    assert out[3] == {"line": 5, "note_id": "n4", "error": "missing 'text'"}
    assert out[4]["error"] == "note text is empty"
    assert "note_id" in out[5]["error"]
    assert out[6] == {"note_id": 6, "non_compliant": False, "probability": 0.1}
    assert seen == [["iron pump", "steel pump"]]  # one model call for the good lines
