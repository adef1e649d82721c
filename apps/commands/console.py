"""`pitstop console`: the operators' web console on 127.0.0.1 (host and port options)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from apps.commands.common import config, console, err

DEFAULT_PORT = 8501


def console_command(
    host: Annotated[
        str, typer.Option(help="address to listen on; beyond loopback needs the write token")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = DEFAULT_PORT,
) -> None:
    """Serve the console: fleet, batteries, alerts, quarantine, models and the stream."""
    from apps.console.security import TOKEN_ENV, ConsoleSecurityError, check_bind, read_token

    try:
        token = read_token()
        check_bind(host, token)
    except ConsoleSecurityError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    from models.serving.server import check_port_free

    check_port_free(host, port)  # one sentence (exit 1) when taken, before the slow imports

    import uvicorn

    from apps.console.app import create_app

    app = create_app(config(), token, host)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"Pitstop console on http://{shown}:{port}/  (Ctrl-C stops it)")
    if token is None:
        console.print(f"Read-only: set {TOKEN_ENV} to acknowledge alerts from the console.")
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info" if verbose else "warning",
        access_log=verbose,
        server_header=False,
    )
