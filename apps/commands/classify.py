"""`pitstop classify`: the compliance classifier over a note, or a file of JSON lines.

The root CLI imports this module at start-up, so torch and MLflow are imported inside the
command, never here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from core.errors import PitstopError

err = Console(stderr=True)
console = Console()


class ClassifyError(PitstopError):
    """`pitstop classify` was asked for something it cannot do."""


def classify_command(
    text: Annotated[str | None, typer.Argument(help="a note to classify")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="JSON lines with note_id and text; '-' reads stdin"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="model URI (default models:/<compliance model>@<alias>)"),
    ] = None,
) -> None:
    """Classify notes: one JSON line each with note_id, non_compliant and probability."""
    from models.compliance.batch import classify_lines, verdict

    if (text is None) == (file is None):
        raise ClassifyError("Give either a note TEXT or --file FILE, not both and not neither.")
    lines = _read_lines(file) if file is not None else None
    classifier = _load(model)
    if text is not None:
        _check_text(text)
        probability = float(classifier.predict_proba([text])[0])
        typer.echo(json.dumps(verdict(None, probability)))
        return
    failed = total = 0
    for output in classify_lines(lines, classifier.predict_proba):
        total += 1
        failed += "error" in output
        typer.echo(json.dumps(output))
    if failed:
        err.print(f"{failed} of {total} line(s) could not be classified; see their 'error'.")
        raise typer.Exit(1)


def _check_text(text: str) -> None:
    from models.compliance.text import note_text_problem

    problem = note_text_problem(text)
    if problem is not None:
        raise ClassifyError(f"Cannot classify this note: {problem}.")


def _read_lines(file: Path) -> Iterable[str]:
    if str(file) == "-":
        return sys.stdin
    try:
        return file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ClassifyError(f"{file} does not exist.") from None
    except UnicodeDecodeError:
        raise ClassifyError(f"{file} is not UTF-8 text; give a JSON-lines file.") from None
    except OSError as exc:
        raise ClassifyError(f"Cannot read {file}: {exc.strerror}.") from None


def _load(model: str | None) -> Any:
    from core.config import load_config
    from models.compliance.pyfunc import load_compliance_classifier
    from models.registry import configure_mlflow

    cfg = load_config()
    configure_mlflow(cfg)
    uri = model or f"models:/{cfg.mlflow.models.compliance}@{cfg.mlflow.alias}"
    # One process, no Spark: two threads use the two cores.
    return load_compliance_classifier(uri, torch_threads=2)
