"""`pitstop serve`: a thin driver over `models.serving.server` (MLflow and uvicorn load inside
the command).

Also runnable alone: `python -m apps.commands.serve --model battery-cycles-rnn --port 8080`.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

from apps.commands.common import one_sentence_errors, quiet_mlflow
from core.config import load_config

console = Console()


@one_sentence_errors
def serve_command(
    model: Annotated[
        str | None,
        typer.Option(
            help="registered model name, or a model URI (models:/name/3, runs:/...) "
            "(default: forecast.model from config)"
        ),
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="alias to serve (default: mlflow.alias from config)")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8080,
) -> None:
    """Serve a registered model over HTTP: GET /ping, /health, /version; POST /invocations."""
    from models.serving.server import (
        build_scoring_app,
        check_port_free,
        load_served_model,
        point_mlflow,
        run_server,
    )

    quiet_mlflow()  # download progress bars are noise in a server log
    cfg = load_config()
    point_mlflow(cfg)
    name = model or cfg.forecast.model
    alias = alias or cfg.mlflow.alias
    check_port_free(host, port)
    with console.status(f"Loading {name}@{alias}"):
        served = load_served_model(name, alias)
    base = f"http://{host}:{port}"
    what = f"{served.describe()} (alias {alias})" if served.version else served.describe()
    console.print(f"Serving {what} at {base}")
    console.print(f"  POST {base}/invocations   GET {base}/ping   Ctrl-C stops")
    run_server(build_scoring_app(served), host, port)


def main() -> None:
    """Run `serve_command` on its own (used by tests and containers without the root CLI)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    typer.run(serve_command)


if __name__ == "__main__":
    main()
