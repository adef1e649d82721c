"""Labelled notes from the user's file (CSV or JSON lines) and their split for training.

A file holds a `text` column (field) and a label: `non_compliant` (0/1, true/false, yes/no)
or `label` (compliant / non-compliant); `non_compliant` wins when both are there, other
columns are ignored. A file that cannot be used at all is one `NotesDataError` sentence
naming the file and what is missing or malformed; a bad row (no text, text that is not a
note, a label that is neither) is set aside with its row number and reason, never a crash.

The split is by each note's text: a note lands in the same split (training, validation or
holdout) whatever else the file holds, so the holdout that decides promotion stays the same
as the file grows, and a note repeated in the file cannot sit on both sides.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import PitstopError
from models.compliance.text import note_text_problem

TEXT, LABEL, FLAG = "text", "label", "non_compliant"
SUFFIXES = (".csv", ".jsonl", ".ndjson")
_TRUE = frozenset({"1", "1.0", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "0.0", "false", "f", "no", "n"})
_NON_COMPLIANT = frozenset({"non-compliant", "non_compliant", "noncompliant", "non compliant"})
HOLDOUT_BUCKET, VALIDATION_BUCKET, BUCKETS = 0, 1, 10  # 10% holdout, 10% validation


class NotesDataError(PitstopError, ValueError):
    """A labelled-notes file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class LabelledNotes:
    """Usable notes (`text`, `non_compliant` bool) and the rows set aside (`row`, `reason`)."""

    notes: pd.DataFrame
    rejected: pd.DataFrame
    source: str


def load_labelled_notes(path: str | Path) -> LabelledNotes:
    """Read a CSV or JSONL file of labelled notes; bad rows are set aside, not fatal."""
    file = Path(path)
    if not file.exists():
        raise NotesDataError(f"{file} does not exist; pass a CSV or JSONL file of labelled notes.")
    if file.is_dir():
        raise NotesDataError(f"{file} is a folder; pass a CSV or JSONL file of labelled notes.")
    if file.suffix.lower() not in SUFFIXES:
        raise NotesDataError(
            f"{file} is neither .csv nor .jsonl; write the labelled notes as one of those."
        )
    records = _read_csv(file) if file.suffix.lower() == ".csv" else _read_jsonl(file)
    return _check_rows(file, records)


def _read_csv(file: Path) -> list[tuple[int, Any]]:
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise NotesDataError(
            f"{file} is empty; it needs a header with 'text' and a label."
        ) from None
    except UnicodeDecodeError:
        raise NotesDataError(f"{file} is not UTF-8 text; save it as UTF-8 CSV.") from None
    except pd.errors.ParserError as exc:
        # pandas says "Error tokenizing data. C error: <what>": keep what went wrong.
        detail = str(exc).strip().splitlines()[-1].split("C error: ")[-1].rstrip(".")
        raise NotesDataError(f"{file} is not a well-formed CSV ({detail}).") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    _require_columns(file, list(frame.columns))
    # Row numbers as a spreadsheet shows them: the header is row 1.
    return list(zip(range(2, len(frame) + 2), frame.to_dict("records"), strict=True))


def _read_jsonl(file: Path) -> list[tuple[int, Any]]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise NotesDataError(f"{file} is not UTF-8 text; write one JSON object per line.") from None
    records: list[tuple[int, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except ValueError:
            records.append((number, None))
    objects = [r for _, r in records if isinstance(r, dict)]
    if not records:
        raise NotesDataError(f"{file} is empty; write one JSON object per line with 'text'.")
    if not objects:
        raise NotesDataError(f"{file} holds no JSON object on any line; write one per line.")
    fields = sorted({key for obj in objects for key in obj})
    _require_columns(file, fields, present=lambda name: any(name in obj for obj in objects))
    return records


def _require_columns(file: Path, columns: list[str], present: Any = None) -> None:
    has = present or (lambda name: name in columns)
    kind = "column" if file.suffix.lower() == ".csv" else "field"
    found = ", ".join(columns[:8]) or "none"
    if not has(TEXT):
        raise NotesDataError(f"{file} has no '{TEXT}' {kind} (found: {found}).")
    if not has(FLAG) and not has(LABEL):
        raise NotesDataError(
            f"{file} has no label {kind}: add '{FLAG}' (0/1 or true/false) or '{LABEL}' "
            "(compliant / non-compliant)."
        )


def parse_label(record: dict[str, Any]) -> tuple[bool | None, str | None]:
    """(non-compliant?, None) from a record's `non_compliant` or `label`, or (None, reason)."""
    if FLAG in record and record[FLAG] not in (None, ""):
        value = record[FLAG]
        if isinstance(value, bool):
            return value, None
        text = str(value).strip().lower()
        if text in _TRUE:
            return True, None
        if text in _FALSE:
            return False, None
        return None, f"'{FLAG}' is {value!r}, not 0/1 or true/false"
    if LABEL in record and record[LABEL] not in (None, ""):
        text = str(record[LABEL]).strip().lower()
        if text in _NON_COMPLIANT:
            return True, None
        if text == "compliant":
            return False, None
        return None, f"'{LABEL}' is {record[LABEL]!r}, not compliant or non-compliant"
    return None, f"no label (neither '{FLAG}' nor '{LABEL}')"


def _check_rows(file: Path, records: list[tuple[int, Any]]) -> LabelledNotes:
    good: list[tuple[int, str, bool]] = []
    rejected: list[tuple[int, str]] = []
    for number, record in records:
        if not isinstance(record, dict):
            rejected.append((number, "not a JSON object" if record is not None else "not JSON"))
            continue
        text = record.get(TEXT)
        problem = f"no '{TEXT}'" if text in (None, "") else note_text_problem(text)
        if problem is not None:
            rejected.append((number, problem))
            continue
        label, reason = parse_label(record)
        if label is None:
            rejected.append((number, reason or "no label"))
            continue
        good.append((number, text, label))
    rows = pd.DataFrame(good, columns=["row", TEXT, FLAG])
    # One row per text; a text labelled both ways cannot teach anything: set it all aside.
    key = rows[TEXT].map(_normalise)
    conflicted = key.map(rows.groupby(key)[FLAG].nunique()) > 1
    rejected += [(n, "the same text is labelled both ways") for n in rows.loc[conflicted, "row"]]
    notes = rows[~conflicted & ~key.duplicated()][[TEXT, FLAG]].reset_index(drop=True)
    rejections = pd.DataFrame(sorted(rejected), columns=["row", "reason"])
    if notes.empty:
        first = f" (row {rejected[0][0]}: {rejected[0][1]})" if rejected else ""
        raise NotesDataError(f"{file} holds no usable labelled note{first}.")
    return LabelledNotes(notes, rejections, str(file))


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def split_bucket(text: str) -> int:
    """0-9 from the note's normalised text: 0 is holdout, 1 validation, the rest training."""
    return zlib.crc32(_normalise(text).encode("utf-8")) % BUCKETS


def split_labelled_notes(
    notes: pd.DataFrame, source: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, validation, holdout) by each note's text; too few notes is a NotesDataError."""
    buckets = notes[TEXT].map(split_bucket)
    holdout = notes[buckets == HOLDOUT_BUCKET].reset_index(drop=True)
    val = notes[buckets == VALIDATION_BUCKET].reset_index(drop=True)
    train = notes[buckets > VALIDATION_BUCKET].reset_index(drop=True)
    if holdout.empty or val.empty or train[FLAG].nunique() < 2:
        raise NotesDataError(
            f"{source} holds too few labelled notes to train on ({len(notes)} usable: "
            f"{len(train)} training, {len(val)} validation, {len(holdout)} holdout); "
            "training needs both labels and about 10% each for validation and holdout."
        )
    return train, val, holdout
