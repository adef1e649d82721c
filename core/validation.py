"""Check one raw message against the wire contract: typed fields, or a quarantine reason.

Pure Python so the stream (inside a pandas function), the simulator's tests and the
HTTP endpoint share one validator. Spark's JSON reader cannot tell a missing field from
a wrong type, and the contract needs that distinction in the quarantine reason.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from core.contract import (
    MAX_MESSAGE_BYTES,
    NOTE_FIELDS,
    SCHEMA_VERSION,
    TELEMETRY_FIELDS,
    FieldRule,
)


@dataclass(frozen=True)
class Checked:
    """A validated message: `fields` (typed, contract fields only) and `extra`, or a `reason`."""

    fields: dict[str, Any] | None
    extra: dict[str, Any] | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not valid JSON")


def _invalid(reason: str) -> Checked:
    return Checked(None, None, reason)


def check_message(raw: bytes | str | None, rules: tuple[FieldRule, ...]) -> Checked:
    """Validate one message against `rules`; never raises."""
    if raw is None:
        return _invalid("empty message")
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_MESSAGE_BYTES:
        return _invalid(f"oversized: {len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _invalid("not UTF-8")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return _invalid("not JSON")
    if not isinstance(obj, dict):
        return _invalid(f"not a JSON object ({type(obj).__name__})")
    fields: dict[str, Any] = {}
    for rule in rules:
        value, reason = _check_field(rule, obj.get(rule.name), rule.name in obj)
        if reason:
            return _invalid(reason)
        fields[rule.name] = value
    if fields.get("schema_version") != SCHEMA_VERSION:
        return _invalid(f"unknown schema_version {fields.get('schema_version')!r}")
    known = {rule.name for rule in rules}
    extra = {k: v for k, v in obj.items() if k not in known}
    return Checked(fields, extra, None)


def check_telemetry(raw: bytes | str | None) -> Checked:
    """Validate a battery-telemetry message."""
    return check_message(raw, TELEMETRY_FIELDS)


def check_note(raw: bytes | str | None) -> Checked:
    """Validate a component-notes message."""
    return check_message(raw, NOTE_FIELDS)


def _check_field(rule: FieldRule, value: Any, present: bool) -> tuple[Any, str | None]:
    if value is None:
        if rule.required:
            return None, f"{'null' if present else 'missing'} required field '{rule.name}'"
        return None, None
    converted, reason = _convert(rule, value)
    if reason:
        return None, reason
    return converted, _check_range(rule, converted)


def _convert(rule: FieldRule, value: Any) -> tuple[Any, str | None]:
    # Runs for every field of every message: the common valid cases return first, and an
    # error message is only formatted for a value that needs one.
    if rule.type == "string":
        if not isinstance(value, str):
            return None, _wrong_type(rule, value)
        if rule.non_empty and not value.strip():
            return None, f"field '{rule.name}' must not be empty"
        return value, None
    if rule.type in ("int", "float"):
        # JSON numbers arrive as exactly int or float (a boolean is neither).
        if type(value) is float:
            if not math.isfinite(value) or (rule.type == "int" and not value.is_integer()):
                return None, _wrong_type(rule, value)
        elif type(value) is not int:
            return None, _wrong_type(rule, value)
        return (int(value) if rule.type == "int" else float(value)), None
    if rule.type == "date":
        if not isinstance(value, str):
            return None, _wrong_type(rule, value)
        try:
            if not _DATE.fullmatch(value):
                raise ValueError(value)
            return dt.date.fromisoformat(value), None
        except ValueError:
            return None, f"field '{rule.name}' must be a date YYYY-MM-DD, got {value[:40]!r}"
    if rule.type == "timestamp":
        if not isinstance(value, str):
            return None, _wrong_type(rule, value)
        try:
            stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None, f"field '{rule.name}' must be an ISO-8601 timestamp, got {value[:40]!r}"
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.timezone.utc)
        return stamp.astimezone(dt.timezone.utc), None
    raise AssertionError(f"unhandled field type {rule.type}")


def _wrong_type(rule: FieldRule, value: Any) -> str:
    return f"field '{rule.name}' must be {_TYPE_WORDS[rule.type]}, got {_describe(value)}"


def _check_range(rule: FieldRule, value: Any) -> str | None:
    if rule.min is not None:
        if value < rule.min or (rule.min_exclusive and value == rule.min):
            bound = f"> {rule.min:g}" if rule.min_exclusive else f">= {rule.min:g}"
            return f"field '{rule.name}' out of range: {value!r} (must be {bound})"
    if rule.max is not None and value > rule.max:
        return f"field '{rule.name}' out of range: {value!r} (must be <= {rule.max:g})"
    return None


_TYPE_WORDS = {
    "string": "a string",
    "int": "an integer",
    "float": "a number",
    "date": "a date string",
    "timestamp": "a timestamp string",
}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"{value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"a JSON {type(value).__name__}"
