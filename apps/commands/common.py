"""What every command module shares: the consoles, output formats and error handling.

Heavy modules (Spark, MLflow, torch) are imported inside the commands that need them, so
quick commands such as `pitstop alerts` start in well under a second.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import typer
from rich.console import Console

from core.config import PitstopConfig, load_config
from core.errors import PitstopError

# Piped output (logs, CI) gets a readable width instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)


class OutputFormat(str, Enum):
    """How alerts are printed."""

    table = "table"
    csv = "csv"
    json = "json"


def config() -> PitstopConfig:
    """The configuration of the environment chosen with `--env` (or $PITSTOP_ENV)."""
    return load_config()


# The Spark session a command started in this process (replay, score, maintain, monitor).
_SPARK: list[Any] = []


def spark_session(cfg: PitstopConfig, **options: Any) -> Any:
    """A Spark session in this process, remembered so that `pitstop` can stop it and leave
    without native teardown once the command is done (`apps.cli.leave`)."""
    from streaming.session import build_spark_session

    spark = build_spark_session(cfg, **options)
    _SPARK.append(spark)
    return spark


def started_spark() -> Any | None:
    """The session `spark_session` started, if a command did."""
    return _SPARK[-1] if _SPARK else None


def quiet_mlflow() -> None:
    """Turn MLflow's download progress bars off: our own output already shows progress."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


F = TypeVar("F", bound=Callable[..., Any])


def one_sentence_errors(command: F) -> F:
    """Print known failures (ours and MLflow's) as one sentence and exit 1, with no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return command(*args, **kwargs)
        except (PitstopError, FileNotFoundError) as exc:
            err.print(f"[red]error:[/red] {exc}")
        except MlflowException as exc:
            first_line = str(exc.message).strip().splitlines()[0] if exc.message else repr(exc)
            err.print(f"[red]error:[/red] MLflow: {first_line}")
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]
