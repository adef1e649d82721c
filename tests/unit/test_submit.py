"""`pitstop stream` passes a supervisor's stop signal on to the spark-submit job it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def stop(signum, _frame):
    out.write_text(f"stopped by {signum}")
    sys.exit(3)
signal.signal(signal.SIGTERM, stop)
out.write_text("ready")
time.sleep(60)
"""

LAUNCHER = """
import os, sys
from streaming.submit import run_forwarding_signals
sys.exit(run_forwarding_signals([sys.executable, sys.argv[1], sys.argv[2]], dict(os.environ)))
"""


def test_sigterm_to_the_launcher_reaches_the_job_and_its_exit_code_comes_back(tmp_path):
    child, launcher, out = tmp_path / "job.py", tmp_path / "launch.py", tmp_path / "out"
    child.write_text(textwrap.dedent(CHILD))
    launcher.write_text(textwrap.dedent(LAUNCHER))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Its own session: the signal goes to the launcher alone, as `docker stop` sends it.
    process = subprocess.Popen(
        [sys.executable, str(launcher), str(child), str(out)], env=env, start_new_session=True
    )
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text() == "ready"):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 3
    assert out.read_text() == f"stopped by {int(signal.SIGTERM)}"
