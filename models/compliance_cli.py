"""Command functions for the compliance model: `pitstop train compliance`, `pitstop classify`.

The root CLI imports this module at start-up, so torch and MLflow are imported inside the
commands, never here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pitstop.errors import PitstopError

err = Console(stderr=True)
console = Console()

CHUNK = 1_000  # notes per model call when classifying a file


class ClassifyError(PitstopError):
    """`pitstop classify` was asked for something it cannot do."""


def train_compliance_command(
    epochs: Annotated[int, typer.Option(min=1, help="passes over the training notes")] = 5,
    seed: Annotated[int, typer.Option(help="seed of the training notes and weights")] = 0,
    force: Annotated[
        bool, typer.Option(help="make this version the champion even if it is not better")
    ] = False,
) -> None:
    """Train the component-compliance classifier, register it, promote it if it is better."""
    from models.train_compliance import train_compliance
    from pitstop.config import load_config

    cfg = load_config()
    result = train_compliance(cfg, epochs=epochs, seed=seed, force=force, progress=True)
    metrics = result.metrics
    console.print(
        f"Held-out notes (unseen sentence shapes): accuracy {metrics['eval_accuracy']:.4f}, "
        f"recall non-compliant {metrics['eval_recall_non_compliant']:.4f}, "
        f"recall compliant {metrics['eval_recall_compliant']:.4f}, "
        f"loss {metrics['eval_loss']:.5f}"
    )
    verdict = "now the champion" if result.promoted else "champion unchanged"
    if result.champion_version and not result.promoted:
        verdict += f" (v{result.champion_version} is as good or better)"
    console.print(
        f"Registered {result.model_name} version {result.version}: {verdict}; "
        f"trained in {result.seconds:.0f} s"
    )
    console.print(f"MLflow run ID: {result.run_id}")


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
    if (text is None) == (file is None):
        raise ClassifyError("Give either a note TEXT or --file FILE, not both and not neither.")
    lines = _read_lines(file) if file is not None else None
    classifier = _load(model)
    if text is not None:
        _check_text(text)
        probability = float(classifier.predict_proba([text])[0])
        typer.echo(json.dumps(_verdict(None, probability)))
        return
    failed = total = 0
    for output in classify_lines(lines, classifier.predict_proba):
        total += 1
        failed += "error" in output
        typer.echo(json.dumps(output))
    if failed:
        err.print(f"{failed} of {total} line(s) could not be classified; see their 'error'.")
        raise typer.Exit(1)


def classify_lines(lines: Iterable[str], predict: Any) -> Iterator[dict[str, Any]]:
    """One output object per non-blank input line, in order: a verdict or an `error`.

    `predict(texts) -> probabilities` is called once per chunk of good lines.
    """
    pending: list[tuple[dict[str, Any], str | None]] = []

    def flush() -> Iterator[dict[str, Any]]:
        texts = [text for _, text in pending if text is not None]
        probabilities = iter(predict(texts) if texts else [])
        for output, text in pending:
            if text is not None:
                output.update(_verdict(output["note_id"], float(next(probabilities))))
            yield output
        pending.clear()

    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        note_id, text, problem = _parse_line(line)
        if problem is not None:
            pending.append(({"line": number, "note_id": note_id, "error": problem}, None))
        else:
            pending.append(({"note_id": note_id}, text))
        if len(pending) >= CHUNK:
            yield from flush()
    yield from flush()


def _parse_line(line: str) -> tuple[Any, str | None, str | None]:
    """(note_id, text, problem) of one JSON line; other fields are ignored."""
    from models.compliance import note_text_problem

    try:
        obj = json.loads(line)
    except ValueError:
        return None, None, "not JSON"
    if not isinstance(obj, dict):
        return None, None, f"not a JSON object ({type(obj).__name__})"
    note_id = obj.get("note_id")
    if not isinstance(note_id, (str, int)) or isinstance(note_id, bool) or note_id == "":
        return None, None, "missing or invalid 'note_id' (a string is expected)"
    if "text" not in obj or obj["text"] is None:
        return note_id, None, "missing 'text'"
    problem = note_text_problem(obj["text"])
    return note_id, (obj["text"] if problem is None else None), problem


def _verdict(note_id: Any, probability: float) -> dict[str, Any]:
    from models.compliance import THRESHOLD

    return {
        "note_id": note_id,
        "non_compliant": probability >= THRESHOLD,
        "probability": round(probability, 6),
    }


def _check_text(text: str) -> None:
    from models.compliance import note_text_problem

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
    from models.compliance_pyfunc import load_compliance_classifier
    from models.registry import configure_mlflow
    from pitstop.config import load_config

    cfg = load_config()
    configure_mlflow(cfg)
    uri = model or f"models:/{cfg.mlflow.models.compliance}@{cfg.mlflow.alias}"
    # One process, no Spark: two threads use the two cores.
    return load_compliance_classifier(uri, torch_threads=2)
