"""The n-gram baseline (TF-IDF + logistic regression, with the year read explicitly), its
files, the kinds of classifier a folder may hold, and the choice between candidates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.compliance.baseline import (
    KIND_FILE,
    PIPELINE_FILE,
    PLAIN,
    NgramSettings,
    YearFeatures,
    fit_ngram_classifier,
    load_ngram_classifier,
    normalise_text,
)
from models.compliance.classifier import ComplianceNet, ComplianceSpec, save_classifier
from models.compliance.kinds import NetworkClassifier, load_text_classifier
from models.compliance.text import ComplianceModelError
from models.compliance.tokenizer import Tokenizer
from models.training.compliance import ComplianceTrainingError, choose_candidate

pytestmark = pytest.mark.unit


def _notes(years: range) -> tuple[list[str], list[bool]]:
    texts, labels = [], []
    for i, year in enumerate(years):
        material = ("steel", "alu", "plastic")[i % 3]
        texts.append(f"{material} pump mfd {year} good")
        labels.append(year < 1995 or material == "plastic")
    return texts, labels


@pytest.fixture(scope="module")
def fitted():
    texts, labels = _notes(range(1970, 2024))
    texts, labels = texts * 6, labels * 6
    return {
        "year": fit_ngram_classifier(texts, labels, NgramSettings(), name="tfidf_year"),
        "plain": fit_ngram_classifier(texts, labels, PLAIN, name="tfidf"),
    }


def test_digits_are_masked_for_the_ngrams() -> None:
    assert normalise_text("MFD 1993, Ref #42") == "mfd 0000, ref #00"


def test_the_cutoff_is_learned_from_the_year_features(fitted) -> None:
    # Digits are masked for the n-grams, so only the year features tell 1994 from 1995.
    notes = ["alu pump mfd 1994 good", "alu pump mfd 1995 good", "alu pump mfd 1961 good"]
    probs = fitted["year"].predict_proba(notes)  # 1961: a year no training note has
    assert probs[0] > 0.5 > probs[1] and probs[2] > 0.5
    assert fitted["year"].predict_proba([]).shape == (0,)
    steps = fitted["plain"].pipeline.named_steps
    assert "spelling" not in steps and "year" not in steps["features"].named_transformers


def test_misspellings_are_read_as_the_known_word(fitted) -> None:
    spelling = fitted["year"].pipeline.named_steps["spelling"]
    assert spelling.transform(["PLASTC pummp mfd 1990"]) == ["plastic pump mfd 1990"]
    assert "pump" in spelling.vocabulary_


def test_year_feature_names() -> None:
    names = YearFeatures().get_feature_names_out()
    assert names[0] == "year<1950" and names[-1] == "no_year"


def test_saved_baseline_loads_safely_and_scores_the_same(fitted, tmp_path) -> None:
    notes = ["iron pump mfd 1980 poor", "alu hub built 2010 good"]
    folder = fitted["year"].save(tmp_path / "clf")
    assert (folder / PIPELINE_FILE).is_file()
    assert json.loads((folder / KIND_FILE).read_text())["kind"] == "ngram"
    loaded = load_text_classifier(folder)
    assert loaded.kind == "ngram" and loaded.name == "tfidf_year"
    assert np.allclose(loaded.predict_proba(notes), fitted["year"].predict_proba(notes))
    with pytest.raises(ComplianceModelError, match="no saved baseline"):
        load_ngram_classifier(tmp_path / "nothing")


def test_a_network_folder_loads_with_or_without_its_kind_file(tmp_path) -> None:
    tokenizer = Tokenizer.fit(["steel pump good", "iron pump fair"] * 2)
    model = ComplianceNet(ComplianceSpec(vocab_size=len(tokenizer.vocab))).eval()
    torch.manual_seed(0)
    older = save_classifier(model, tokenizer, tmp_path / "older")  # before there were kinds
    newer = NetworkClassifier(model, tokenizer).save(tmp_path / "newer")
    for folder in (older, newer):
        loaded = load_text_classifier(folder)
        assert loaded.kind == "network"
        assert loaded.predict_proba(["steel pump good"]).shape == (1,)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / KIND_FILE).write_text('{"kind": "forest"}')
    with pytest.raises(ComplianceModelError, match="unknown kind 'forest'"):
        load_text_classifier(tmp_path / "odd")


def test_fit_refuses_one_class_or_mismatched_labels() -> None:
    with pytest.raises(ComplianceModelError, match="both"):
        fit_ngram_classifier(["a pump", "b pump"], [True, True])
    with pytest.raises(ComplianceModelError, match="exactly one label"):
        fit_ngram_classifier(["a pump"], [True, False])


def test_the_lowest_validation_loss_is_chosen_then_accuracy_then_simplicity() -> None:
    assert (
        choose_candidate(
            {
                "network": {"loss": 0.02, "accuracy": 0.99},
                "tfidf": {"loss": 0.05, "accuracy": 0.995},
            }
        )
        == "network"
    )
    tie = {"loss": 0.03, "accuracy": 0.99}
    assert choose_candidate({"network": tie, "tfidf": tie, "tfidf_year": tie}) == "tfidf_year"
    assert (
        choose_candidate({"network": {"loss": 0.03, "accuracy": 0.995}, "tfidf": tie}) == "network"
    )
    with pytest.raises(ComplianceTrainingError, match="No candidate"):
        choose_candidate({})
