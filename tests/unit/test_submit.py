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


def test_the_job_gets_the_whole_resolved_configuration(monkeypatch) -> None:
    from core.config import load_config
    from streaming.submit import config_environment

    base = load_config("local")
    cfg = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"topics": base.kafka.topics.model_copy(update={"notes": "notes-x"})}
            ),
            "mlflow": base.mlflow.model_copy(update={"registry_uri": "sqlite:////tmp/reg.db"}),
            "stream": base.stream.model_copy(
                update={"trigger_seconds": 0.25, "score_notes": False}
            ),
            "forecast": base.forecast.model_copy(
                update={"shadow_models": ["battery-cycles-automl"]}
            ),
        }
    )
    monkeypatch.setenv("PITSTOP__STREAM__TRIGGER_SECONDS", "9")  # inherited, already in cfg
    env = config_environment(cfg)
    for name in [n for n in os.environ if n.startswith("PITSTOP__")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("PITSTOP__"):
            monkeypatch.setenv(name, value)
    assert load_config("local") == cfg
    assert env["PYSPARK_PYTHON"] == sys.executable
