"""run_simulation: files output and truth agree, pacing, bad input, Ctrl-C and notes."""

from __future__ import annotations

import gzip
import json
import sys
import time

import pandas as pd
import pytest

from core.config import load_config
from simulator.errors import SimulatorError
from simulator.run import run_simulation
from simulator.sinks.base import CountingSink

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def cfg():
    return load_config("local")


@pytest.fixture(scope="module")
def files_run(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    summary = run_simulation(
        cfg,
        sink="files",
        batteries=60,
        days=120,
        seed=9,
        failure_rate=0.2,
        output_dir=out,
        notes=False,
    )
    return summary, out


def _telemetry(out) -> pd.DataFrame:
    lines = (out / "battery-telemetry.jsonl").read_text().splitlines()
    return pd.DataFrame([json.loads(line) for line in lines])


def test_files_run_reports_what_it_wrote(files_run) -> None:
    summary, out = files_run
    telemetry = _telemetry(out)
    assert summary.events_sent == summary.telemetry_sent == summary.delivered == len(telemetry)
    assert summary.failed == 0 and summary.days == 120 and not summary.interrupted
    assert summary.batteries_simulated == telemetry["battery_id"].nunique()
    assert sum(summary.failures.values()) == summary.batteries_simulated - 60
    assert "events to files" in summary.line()


def test_events_leave_in_date_order(files_run) -> None:
    _, out = files_run
    dates = _telemetry(out)["date"]
    assert dates.is_monotonic_increasing
    assert not _telemetry(out).duplicated(["battery_id", "date"]).any()


def test_truth_matches_the_output(files_run) -> None:
    summary, out = files_run
    telemetry = _telemetry(out)
    batteries = pd.read_csv(out / "truth" / "batteries.csv")
    assert sorted(batteries["battery_id"]) == sorted(telemetry["battery_id"].unique())
    failed = batteries.dropna(subset=["failure_date"])
    assert set(failed["cause"]) <= {"worn", "weak_cell"}
    assert failed["cause"].value_counts().to_dict() == summary.failures
    last = telemetry.groupby("battery_id")["date"].max()
    assert (failed.set_index("battery_id")["failure_date"] == last[failed["battery_id"]]).all()
    assert (batteries["weak_cell"].sum()) == summary.weak_cells_seeded
    with gzip.open(out / "truth" / "readings.csv.gz", "rt") as handle:
        readings = pd.read_csv(handle)
    assert len(readings) == len(telemetry)
    assert list(readings.columns) == ["battery_id", "date", "expected_daily_cycles"]
    assert (readings["battery_id"] == telemetry["battery_id"]).all()


def test_same_seed_same_output(cfg, files_run, tmp_path) -> None:
    _, out = files_run
    run_simulation(
        cfg,
        sink="files",
        batteries=60,
        days=120,
        seed=9,
        failure_rate=0.2,
        output_dir=tmp_path,
        notes=False,
    )
    assert (tmp_path / "battery-telemetry.jsonl").read_bytes() == (
        out / "battery-telemetry.jsonl"
    ).read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sink": "pigeon"}, "Unknown sink"),
        ({"batteries": -3}, "batteries"),
        ({"days": 0}, "days"),
        ({"rate": -1.0}, "rate"),
        ({"speed": 0.0}, "speed"),
        ({"failure_rate": 1.2}, "failure_rate"),
        ({"start_date": "01/02/2024"}, "YYYY-MM-DD"),
    ],
)
def test_bad_input_is_one_clear_sentence(cfg, tmp_path, kwargs, message) -> None:
    with pytest.raises(SimulatorError, match=message) as info:
        run_simulation(cfg, **{"sink": "null", "output_dir": tmp_path, **kwargs})
    assert str(info.value).endswith(".") and "\n" not in str(info.value)


def test_rate_limits_events_per_second(cfg, tmp_path) -> None:
    started = time.monotonic()
    summary = run_simulation(
        cfg, sink="null", batteries=50, days=20, rate=2000.0, output_dir=tmp_path, notes=False
    )
    elapsed = time.monotonic() - started
    assert elapsed >= summary.events_sent / 2000.0 * 0.9
    assert summary.rate <= 2000.0 * 1.1


def test_speed_limits_days_per_second(cfg, tmp_path) -> None:
    started = time.monotonic()
    run_simulation(cfg, sink="null", batteries=5, days=6, speed=10.0, output_dir=tmp_path)
    assert time.monotonic() - started >= 0.5


class InterruptingSink(CountingSink):
    """Test double: accepts messages, then acts like Ctrl-C arrived mid-run."""

    name = "interrupting"

    def __init__(self, after_batches: int) -> None:
        super().__init__()
        self.after, self.batches, self.closed = after_batches, 0, False

    def send_batch(self, topic, batch) -> None:
        self.batches += 1
        if self.batches > self.after:
            raise KeyboardInterrupt
        self.delivered += len(batch)

    def close(self):
        self.closed = True
        return super().close()


def test_ctrl_c_flushes_and_returns_an_honest_summary(cfg, tmp_path) -> None:
    sink = InterruptingSink(after_batches=5)
    summary = run_simulation(cfg, sink=sink, batteries=10, days=30, output_dir=tmp_path)
    assert summary.interrupted and sink.closed
    assert summary.days == 5 and summary.delivered == summary.events_sent
    batteries = pd.read_csv(tmp_path / "truth" / "batteries.csv")
    assert len(batteries) >= 10  # the truth file was completed


class DeadSink(CountingSink):
    """Test double: a destination that stops acknowledging after the first day."""

    name = "dead"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    @property
    def healthy(self) -> bool:
        return self.calls < 1

    def send_batch(self, topic, batch) -> None:
        self.calls += 1
        self.failed += len(batch)


def test_a_dead_destination_ends_the_run_early(cfg, tmp_path) -> None:
    summary = run_simulation(cfg, sink=DeadSink(), batteries=10, days=30, output_dir=tmp_path)
    assert summary.days == 1 and summary.stopped_reason
    assert summary.failed == summary.events_sent and summary.delivered == 0


def test_notes_go_to_their_topic_with_truth_beside(cfg, tmp_path) -> None:
    summary = run_simulation(
        cfg, sink="files", batteries=30, days=120, output_dir=tmp_path, notes=True
    )
    notes = [json.loads(x) for x in (tmp_path / "component-notes.jsonl").read_text().splitlines()]
    assert summary.notes_enabled and summary.notes_sent == len(notes) > 0
    assert all("non_compliant" not in n for n in notes)
    truth = pd.read_csv(tmp_path / "truth" / "notes.csv")
    assert truth["note_id"].tolist() == [n["note_id"] for n in notes]
    assert truth["non_compliant"].isin([True, False]).all()


def test_the_simulator_does_not_import_spark() -> None:
    import subprocess

    code = (
        "import sys, simulator.run, simulator.sinks.kafka, simulator.sinks.eventhubs, "
        "simulator.sinks.iothub, simulator.sinks.files; "
        "sys.exit('pyspark' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
