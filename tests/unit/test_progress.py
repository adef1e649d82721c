"""How far a query has got, read from its checkpoint's offset log (no Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streaming.progress import caught_up, committed_offsets, source_offsets

pytestmark = pytest.mark.unit

METADATA = {"batchWatermarkMs": 0, "batchTimestampMs": 1733480000000, "conf": {}}


def _offsets_file(*sources: dict | None) -> str:
    lines = ["v1", json.dumps(METADATA)]
    lines += [json.dumps(s) if s is not None else "-" for s in sources]
    return "\n".join(lines)


def test_source_offsets_reads_every_source_line() -> None:
    text = _offsets_file({"battery-telemetry": {"0": 10, "1": 7}}, None, {"notes": {"0": 3}})
    assert source_offsets(text) == {"battery-telemetry": {"0": 10, "1": 7}, "notes": {"0": 3}}


def test_only_committed_batches_count(tmp_path: Path) -> None:
    (tmp_path / "offsets").mkdir()
    (tmp_path / "commits").mkdir()
    (tmp_path / "offsets" / "0").write_text(_offsets_file({"t": {"0": 5, "1": 5}}))
    (tmp_path / "offsets" / "1").write_text(_offsets_file({"t": {"0": 9, "1": 8}}))
    assert committed_offsets(tmp_path) == {}
    (tmp_path / "commits" / "0").write_text("v1\n{}")
    assert committed_offsets(tmp_path) == {"t": {0: 5, 1: 5}}
    assert not caught_up(tmp_path, {"t": {0: 9, 1: 8}})
    (tmp_path / "commits" / "1").write_text("v1\n{}")
    assert caught_up(tmp_path, {"t": {0: 9, 1: 8}})
