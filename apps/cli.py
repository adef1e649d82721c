"""`pitstop`: the command line. The one place that registers every command.

Each command is a function in `apps.commands.<group>` that parses options and calls one
function of the layers below; this module only names them and hangs them on the app.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, NoReturn

import typer

from apps.commands import (
    alerts,
    classify,
    demo,
    forecast,
    monitor,
    registry,
    serve,
    simulate,
    stream,
    train,
)
from apps.commands import broker as broker_commands
from apps.commands import console as console_commands
from apps.commands.common import err, started_spark
from core.config import ENV_NAME_VAR
from core.errors import PitstopError
from core.process_exit import exit_without_teardown

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Pitstop: predictive maintenance for connected cars, streamed.",
)
broker_app = typer.Typer(no_args_is_help=True, help="The local Apache Kafka broker (KRaft).")
alerts_app = typer.Typer(
    invoke_without_command=True, help="Query alerts (battery or compliance) from Delta."
)
train_app = typer.Typer(no_args_is_help=True, help="Train forecast models and register them.")
models_app = typer.Typer(
    no_args_is_help=True, help="Registered models: list, promote, roll back, compare live."
)


@app.callback()
def _root(
    env: Annotated[
        str | None, typer.Option(help="configuration environment: local, azure, ...")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log more")] = False,
) -> None:
    if env:
        os.environ[ENV_NAME_VAR] = env
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    """Every command of the CLI, in the order `pitstop --help` lists them."""
    app.add_typer(broker_app, name="broker")
    broker_app.command("start")(broker_commands.start)
    broker_app.command("stop")(broker_commands.stop)
    broker_app.command("status")(broker_commands.status)
    app.add_typer(alerts_app, name="alerts")
    alerts_app.callback(invoke_without_command=True)(alerts.list_alerts)
    alerts_app.command("ack")(alerts.ack)
    app.command("setup")(broker_commands.setup)
    app.command("stream")(stream.stream)
    app.command("replay")(stream.replay)
    app.command("score")(stream.score)
    app.command("maintain")(stream.maintain)
    app.command("monitor")(monitor.monitor)
    app.command("demo")(demo.demo)
    app.add_typer(train_app, name="train")
    train_app.callback()(train.train_group)
    train_app.command("rnn")(train.train_rnn_command)
    train_app.command("automl")(train.train_automl_command)
    train_app.command("compliance")(train.train_compliance_command)
    app.add_typer(models_app, name="models")
    models_app.command("list")(registry.list_command)
    models_app.command("promote")(registry.promote_command)
    models_app.command("rollback")(registry.rollback_command)
    models_app.command("compare")(registry.compare_command)
    app.command("simulate")(simulate.simulate)
    app.command("serve")(serve.serve_command)
    app.command("classify")(classify.classify_command)
    app.command("forecast")(forecast.forecast_command)
    app.command("console")(console_commands.console_command)


_register()


def main() -> None:
    """Console-script entry: run the app; known failures print one sentence, not a traceback.

    A command that ends with `typer.Exit(code)` (`broker status` when no broker runs,
    `stream` passing on its job's code) makes `code` the process's exit code: without
    standalone mode click returns it instead of exiting.
    """
    try:
        code = app(standalone_mode=False)
    except (PitstopError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        leave(1)
    except typer.Abort:
        err.print("aborted")
        leave(130)
    except typer.Exit as exc:
        leave(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            leave(exc.exit_code)
        raise
    leave(code if isinstance(code, int) else 0)


def leave(code: int) -> NoReturn:
    """Exit with `code`. After a command that ran Spark in this process, stop the session
    and end the process without the interpreter's teardown (`core.process_exit`): the
    command's output is complete, and a native library aborting at exit would turn it into
    exit 134."""
    spark = started_spark()
    if spark is None:
        sys.exit(code)
    try:
        spark.stop()
    finally:
        exit_without_teardown(code)
