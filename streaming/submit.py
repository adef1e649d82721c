"""Build the `spark-submit` command line for the streaming job from configuration."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pitstop.config import PitstopConfig
from streaming.jars import ivy_dir, ivy_settings, packages_arg

JOB_FILE = Path(__file__).resolve().parent / "job.py"


def spark_submit_command(cfg: PitstopConfig, job_args: list[str] | None = None) -> list[str]:
    """`spark-submit` with the pinned packages, driver settings and the job file."""
    submit = shutil.which("spark-submit", path=str(Path(sys.executable).parent)) or shutil.which(
        "spark-submit"
    )
    if submit is None:
        raise FileNotFoundError("spark-submit is not installed; run `make setup` first.")
    command = [submit, "--packages", packages_arg(), "--driver-memory", cfg.spark.driver_memory]
    if cfg.spark.master:
        command += ["--master", cfg.spark.master]
    if "://" not in cfg.home:
        command += [
            "--conf",
            f"spark.jars.ivy={ivy_dir(cfg.home)}",
            "--conf",
            f"spark.jars.ivySettings={ivy_settings()}",
            "--driver-java-options",
            f"-Dpitstop.ivy.dir={ivy_dir(cfg.home)} -Dderby.system.home={cfg.home}",
        ]
    return [*command, str(JOB_FILE), "--env", cfg.env, *(job_args or [])]


def submit_environment() -> dict[str, str]:
    """Environment for spark-submit: workers and driver run this interpreter."""
    env = dict(os.environ)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return env
