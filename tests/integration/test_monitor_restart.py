"""`pitstop monitor` killed mid-run and started again: every pair once, none twice.

The lake comes from the stream's own steps (a replayed recording scored by the trained
champion); the monitor runs as the CLI command a user starts, in its own process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.lake import read_table
from streaming import tables
from streaming.replay import run_replay
from streaming.submit import config_environment
from tests.component.test_monitor import expected_pairs

pytestmark = pytest.mark.integration


def monitor_process(cfg, log: Path, *args: str) -> subprocess.Popen:
    pitstop = Path(sys.executable).with_name("pitstop")
    env = {**config_environment(cfg), "PITSTOP__MONITOR__TRIGGER_SECONDS": "1"}
    return subprocess.Popen(
        [str(pitstop), "monitor", *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_monitor_killed_after_its_append_writes_each_pair_once(spark, tmp_path, trained_config):
    from simulator.run import run_simulation

    recording = tmp_path / "recording"
    run_simulation(
        trained_config,
        sink="files",
        batteries=8,
        days=120,
        seed=9,
        output_dir=recording,
        notes=False,
    )
    cfg = run_replay(spark, trained_config, recording, tmp_path / "out")
    cfg = cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"metrics_port": 0})})
    log = tmp_path / "monitor.log"
    first_append = Path(cfg.storage.table(tables.FORECAST_ACCURACY)) / "_delta_log"
    job = monitor_process(cfg, log)
    try:
        deadline = time.monotonic() + 240
        # Version 0 creates the table; version 1 is the first batch's append. Kill right
        # after it: before (or just after) the checkpoint records the batch as done.
        while not (first_append / f"{1:020d}.json").exists():
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the monitor appended nothing in time"
            time.sleep(0.05)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    again = monitor_process(cfg, log, "--once")
    assert again.wait(timeout=300) == 0, log.read_text()[-3000:]

    accuracy = read_table(cfg, tables.FORECAST_ACCURACY)
    keys = pd.MultiIndex.from_frame(
        accuracy[["model_name", "model_role", "battery_id", "forecast_date", "horizon_day"]]
    )
    assert not keys.duplicated().any(), "a pair was written twice"
    got = {(m, r, b, pd.Timestamp(d).date(), int(h)) for m, r, b, d, h in keys.to_list()}
    assert got == expected_pairs(cfg)
    assert accuracy.monitor_batch.nunique() == 1  # the one batch, appended once
