"""Classify notes given as JSON lines: one verdict (or one error) per line, in order.

Pure: the model's `predict(texts) -> probabilities` is passed in, so the same code serves
`pitstop classify --file` and tests without a registered model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from models.compliance.classifier import THRESHOLD
from models.compliance.text import note_text_problem

CHUNK = 1_000  # notes per model call


def classify_lines(lines: Iterable[str], predict: Any) -> Iterator[dict[str, Any]]:
    """One output object per non-blank input line, in order: a verdict or an `error`.

    `predict(texts) -> probabilities` is called once per chunk of good lines.
    """
    pending: list[tuple[dict[str, Any], str | None]] = []

    def flush() -> Iterator[dict[str, Any]]:
        texts = [text for _, text in pending if text is not None]
        probabilities = iter(predict(texts) if texts else [])
        for output, text in pending:
            if text is not None:
                output.update(verdict(output["note_id"], float(next(probabilities))))
            yield output
        pending.clear()

    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        note_id, text, problem = _parse_line(line)
        if problem is not None:
            pending.append(({"line": number, "note_id": note_id, "error": problem}, None))
        else:
            pending.append(({"note_id": note_id}, text))
        if len(pending) >= CHUNK:
            yield from flush()
    yield from flush()


def _parse_line(line: str) -> tuple[Any, str | None, str | None]:
    """(note_id, text, problem) of one JSON line; other fields are ignored."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None, None, "not JSON"
    if not isinstance(obj, dict):
        return None, None, f"not a JSON object ({type(obj).__name__})"
    note_id = obj.get("note_id")
    if not isinstance(note_id, (str, int)) or isinstance(note_id, bool) or note_id == "":
        return None, None, "missing or invalid 'note_id' (a string is expected)"
    if "text" not in obj or obj["text"] is None:
        return note_id, None, "missing 'text'"
    problem = note_text_problem(obj["text"])
    return note_id, (obj["text"] if problem is None else None), problem


def verdict(note_id: Any, probability: float) -> dict[str, Any]:
    """The output object of one classified note."""
    return {
        "note_id": note_id,
        "non_compliant": probability >= THRESHOLD,
        "probability": round(probability, 6),
    }
