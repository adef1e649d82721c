"""The user's labelled-notes file: CSV and JSONL, both label columns, bad rows set aside with
their row number, and one clear sentence for a file that cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models.compliance.data import (
    NotesDataError,
    load_labelled_notes,
    parse_label,
    split_bucket,
    split_labelled_notes,
)

pytestmark = pytest.mark.unit

NOTES = Path(__file__).resolve().parents[1] / "fixtures" / "notes"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_a_non_compliant_column(tmp_path) -> None:
    file = write(
        tmp_path / "notes.csv",
        "text,non_compliant,technician\n"
        '"steel pump, mfd 2004, good",0,JS\n'
        "iron pump 1980,1,JS\n"
        "alu hub 2010 ok,false,JS\n"
        "PLASTIC TRAY 2019 GOOD,True,JS\n"
        "hub 2001 fair,yes,JS\n",
    )
    loaded = load_labelled_notes(file)
    assert loaded.notes["non_compliant"].tolist() == [False, True, False, True, True]
    assert loaded.notes.columns.tolist() == ["text", "non_compliant"]
    assert loaded.rejected.empty and loaded.source == str(file)


def test_jsonl_with_a_label_field(tmp_path) -> None:
    lines = [
        {"text": "steel pump 2004 good", "label": "compliant"},
        {"text": "iron pump 1980", "label": "Non-Compliant"},
        {"text": "alu hub 2010", "label": "non_compliant", "note_id": "n3"},
        {"text": "tray 2019", "label": "noncompliant"},
    ]
    file = write(tmp_path / "notes.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert load_labelled_notes(file).notes["non_compliant"].tolist() == [False, True, True, True]


def test_bad_rows_are_set_aside_with_their_row_number(tmp_path) -> None:
    file = write(
        tmp_path / "notes.csv",
        "text,non_compliant,label\n"
        "steel pump 2004 good,0,\n"  # row 2: fine
        ",1,\n"  # row 3: no text
        "iron pump 1980,maybe,\n"  # row 4: not a label
        "1993 / 2004,1,\n"  # row 5: no words
        "alu hub 2010,,compliant\n"  # row 6: fine, from `label`
        "hub 2001 fair,,\n"  # row 7: no label at all
        "iron hub 2001,,unsure\n"  # row 8: not a label
        "same text,1,\n"  # rows 9 and 10: labelled both ways
        "Same  text,0,\n"
        "steel pump 2004 good,0,\n",  # row 11: a repeat, kept once
    )
    loaded = load_labelled_notes(file)
    assert loaded.notes["text"].tolist() == ["steel pump 2004 good", "alu hub 2010"]
    reasons = dict(zip(loaded.rejected["row"], loaded.rejected["reason"], strict=True))
    assert set(reasons) == {3, 4, 5, 7, 8, 9, 10}
    assert reasons[3] == "no 'text'"
    assert "'non_compliant' is 'maybe'" in reasons[4]
    assert reasons[5] == "note text has no words"
    assert "no label" in reasons[7] and "'label' is 'unsure'" in reasons[8]
    assert reasons[9] == reasons[10] == "the same text is labelled both ways"


def test_jsonl_lines_that_are_not_objects_are_set_aside(tmp_path) -> None:
    file = write(
        tmp_path / "notes.ndjson",
        '{"text": "steel pump 2004 good", "non_compliant": 0}\nnot json\n[1, 2]\n'
        '{"text": "iron pump", "non_compliant": true}\n{"non_compliant": 1}\n',
    )
    loaded = load_labelled_notes(file)
    assert loaded.notes["non_compliant"].tolist() == [False, True]
    assert loaded.rejected.values.tolist() == [
        [2, "not JSON"],
        [3, "not a JSON object"],
        [5, "no 'text'"],
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "does not exist"),
        ("notes.txt", "text,label\na,compliant\n", "neither .csv nor .jsonl"),
        ("empty.csv", "", "is empty"),
        ("notext.csv", "note,label\na,compliant\n", "has no 'text' column (found: note, label)"),
        ("nolabel.csv", "text,grade\na,A\n", "has no label column: add 'non_compliant'"),
        ("broken.csv", 'text,label\n"a,compliant\nb,c,d,e\n', "not a well-formed CSV"),
        ("empty.jsonl", "\n\n", "is empty"),
        ("lists.jsonl", "[1]\n[2]\n", "no JSON object on any line"),
        ("nolabel.jsonl", '{"text": "a"}\n', "has no label field"),
        ("allbad.csv", "text,label\n,compliant\n", "holds no usable labelled note (row 2"),
    ],
)
def test_unusable_files_are_one_sentence_naming_the_file(
    tmp_path, name: str, content: str | None, message: str
) -> None:
    file = tmp_path / name
    if content is not None:
        file.write_text(content, encoding="utf-8")
    with pytest.raises(NotesDataError) as caught:
        load_labelled_notes(file)
    text = str(caught.value)
    assert message in text and str(file) in text
    assert text.count(". ") == 0 and "\n" not in text  # one sentence


def test_a_folder_and_a_binary_file_are_refused(tmp_path) -> None:
    with pytest.raises(NotesDataError, match="is a folder"):
        load_labelled_notes(tmp_path)
    binary = tmp_path / "notes.csv"
    binary.write_bytes(b"text,label\n\xff\xfe\x00bad,compliant\n")
    with pytest.raises(NotesDataError, match="not UTF-8"):
        load_labelled_notes(binary)


def test_labels_read_both_ways() -> None:
    assert parse_label({"non_compliant": True}) == (True, None)
    assert parse_label({"non_compliant": 0}) == (False, None)
    assert parse_label({"non_compliant": " 1.0 "}) == (True, None)
    assert parse_label({"non_compliant": "", "label": "compliant"}) == (False, None)
    assert parse_label({"non_compliant": 1, "label": "compliant"}) == (True, None)  # flag wins
    assert parse_label({"label": "NON COMPLIANT"}) == (True, None)
    assert parse_label({})[0] is None


def test_split_is_by_text_and_refuses_too_few_notes() -> None:
    notes = pd.DataFrame(
        {"text": [f"steel pump {i} good" for i in range(400)], "non_compliant": [0, 1] * 200}
    )
    train, val, holdout = split_labelled_notes(notes, "notes.csv")
    assert len(train) + len(val) + len(holdout) == 400
    assert 20 <= len(val) <= 60 and 20 <= len(holdout) <= 60
    assert not set(train["text"]) & set(holdout["text"])
    # A note's split does not depend on what else the file holds.
    again, _, held_again = split_labelled_notes(notes.iloc[::-1].iloc[:300], "notes.csv")
    assert set(held_again["text"]) <= set(holdout["text"])
    assert split_bucket("Steel  Pump 3 GOOD") == split_bucket("steel pump 3 good")
    with pytest.raises(NotesDataError, match="too few labelled notes"):
        split_labelled_notes(notes.head(5), "notes.csv")


@pytest.mark.parametrize(
    ("name", "size"), [("handwritten.csv", 150), ("handwritten-sealed.csv", 100)]
)
def test_the_hand_written_sets_load_and_their_labels_follow_the_regulation(
    name: str, size: int
) -> None:
    loaded = load_labelled_notes(NOTES / name)
    assert len(loaded.notes) >= size and loaded.rejected.empty
    frame = pd.read_csv(NOTES / name, dtype=str, keep_default_na=False)
    for row in frame.itertuples(index=False):
        materials = set(filter(None, row.materials.split(";")))
        rule = (
            (row.year != "" and int(row.year) < 1995)
            or row.condition in ("fair", "poor")
            or bool(materials & {"plastic", "iron"})
        )
        assert int(row.non_compliant) == rule, row.text
    assert 0.4 < loaded.notes["non_compliant"].mean() < 0.6
