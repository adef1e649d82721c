"""The recorded fixtures (scripts/make_fixtures.py) replay to exactly the alerts recorded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.lake import read_table
from streaming.replay import run_replay

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COLUMNS = ["battery_id", "car_id", "status", "alert_date", "predicted_failure_date"]


@pytest.mark.parametrize(
    ("recording", "kind"), [("battery-telemetry.jsonl", "jsonl"), ("battery-telemetry.csv", "csv")]
)
def test_fixture_replays_to_the_recorded_alerts(spark, tmp_path, test_config, recording, kind):
    fleet = FIXTURES / "small-fleet"
    replayed = run_replay(
        spark, test_config, fleet / recording, tmp_path / kind, str(FIXTURES / "model")
    )
    got = read_table(replayed, "battery_alerts")[COLUMNS].astype(str)
    got = got.sort_values(["battery_id", "alert_date"], ignore_index=True)
    want = pd.read_csv(fleet / f"expected-alerts-{kind}.csv", dtype=str)
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want)
    truth = pd.read_csv(fleet / "truth" / "batteries.csv")
    assert set(want["battery_id"]) <= set(truth["battery_id"].astype(str))


def test_replay_as_json_prints_only_data_on_stdout(tmp_path):
    """`pitstop replay ... --format json | jq` works: Ivy's and Spark's chatter goes to stderr."""
    import json
    import subprocess
    import sys

    fleet = FIXTURES / "small-fleet"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "pitstop"),
            "replay",
            str(fleet / "battery-telemetry.csv"),
            "--model",
            str(FIXTURES / "model"),
            "--output",
            str(tmp_path / "out"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    want = pd.read_csv(fleet / "expected-alerts-csv.csv", dtype=str)
    assert sorted(r["battery_id"] for r in rows) == sorted(want["battery_id"])
