"""Build the `spark-submit` command line for the streaming job from configuration."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from core.config import ENV_PREFIX, PitstopConfig
from streaming.session import spark_conf

JOB_FILE = Path(__file__).resolve().parent / "job.py"
_LAUNCH_KEYS = (
    "spark.jars",
    "spark.jars.packages",
    "spark.jars.ivy",
    "spark.jars.ivySettings",
    "spark.driver.memory",
    "spark.driver.extraJavaOptions",
)


def spark_submit_command(cfg: PitstopConfig, job_args: list[str] | None = None) -> list[str]:
    """`spark-submit` with the pinned packages, driver settings and the job file."""
    submit = shutil.which("spark-submit", path=str(Path(sys.executable).parent)) or shutil.which(
        "spark-submit"
    )
    if submit is None:
        raise FileNotFoundError("spark-submit is not installed; run `make setup` first.")
    command = [submit]
    if cfg.spark.master:
        command += ["--master", cfg.spark.master]
    # The settings the launcher needs before the JVM starts (jars, Ivy, driver memory and
    # options) come from the one place that knows them: the session builder's conf.
    conf = spark_conf(cfg)
    for key in _LAUNCH_KEYS:
        if key in conf:
            command += ["--conf", f"{key}={conf[key]}"]
    return [*command, str(JOB_FILE), "--env", cfg.env, *(job_args or [])]


def run_forwarding_signals(command: list[str], env: dict[str, str]) -> int:
    """Run `command` to its end; SIGINT and SIGTERM sent to this process are passed on to it.

    A terminal's Ctrl-C reaches the whole process group anyway, but `docker stop`, systemd
    and other supervisors signal only the process they started: without this the job would
    be killed later instead of stopping after its current micro-batch.
    """
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def submit_environment() -> dict[str, str]:
    """Environment for spark-submit: workers and driver run this interpreter."""
    env = dict(os.environ)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return env


def config_environment(cfg: PitstopConfig) -> dict[str, str]:
    """`submit_environment` plus `PITSTOP__` variables that hand a job launched with it the
    whole of `cfg` (it loads its configuration from files and variables, not from this
    process): every section as resolved here, whatever the job's own files say. Inherited
    `PITSTOP__` variables are dropped: `cfg` already holds what they said."""
    env = {k: v for k, v in submit_environment().items() if not k.upper().startswith(ENV_PREFIX)}
    env.update(cfg.environment())
    return env
