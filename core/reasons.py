"""Quarantine reasons grouped into a few categories: bounded label values for metrics and charts.

A reason is a sentence naming the field and value (`field 'date' must be a date YYYY-MM-DD,
got '2024-13-01'`), so counting by reason would make one series per bad value. Each category
is a regular expression over the start or body of the reason texts the validator
(`core.validation`), the battery state step (late, duplicate) and the note checks write;
the first match wins. Python and Spark (`streaming.parsing.reason_category`) use this one
list, so the job's metrics and a query over `quarantine` agree.
"""

from __future__ import annotations

import re

OTHER = "other"

# (category, Java- and Python-compatible regular expression), tried in order.
REASON_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("oversize", r"^oversized"),
    ("empty", r"^empty message"),
    ("not_json", r"^not (UTF-8|JSON|a JSON object)"),
    ("missing_field", r"^(missing|null) required field|must not be empty"),
    ("out_of_range", r"out of range"),
    ("wrong_type", r"must be "),
    ("schema_version", r"^unknown schema_version"),
    ("late", r"^late"),
    ("duplicate", r"^duplicate"),
    ("unreadable_note", r"^note text"),
)
CATEGORIES: tuple[str, ...] = (*(name for name, _ in REASON_CATEGORIES), OTHER)

_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in REASON_CATEGORIES)


def reason_category(reason: str | None) -> str:
    """The category of one quarantine reason (`other` for one no pattern knows)."""
    if not reason:
        return OTHER
    for name, pattern in _COMPILED:
        if pattern.search(reason):
            return name
    return OTHER
