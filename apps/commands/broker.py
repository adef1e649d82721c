"""`pitstop broker start|stop|status` and `pitstop setup`: the local Kafka broker and the jars."""

from __future__ import annotations

from pathlib import Path

import typer

from apps.commands.common import config, console


def start() -> None:
    """Start the local broker (formats storage on first start) and create the topics."""
    from broker.process import start_broker

    handle = start_broker(config())
    console.print(f"Kafka broker running at {handle.bootstrap} (pid {handle.pid})")


def stop() -> None:
    """Stop the local broker started by `pitstop broker start`."""
    from broker.process import stop_broker

    stopped = stop_broker(config())
    console.print("Kafka broker stopped" if stopped else "Kafka broker was not running")


def status() -> None:
    """Say whether the local broker runs, and list its topics; exit 1 when it does not run."""
    from broker.process import broker_status

    found = broker_status(config())
    if not found.running:
        console.print("Kafka broker is not running")
        raise typer.Exit(1)
    console.print(f"Kafka broker running at {found.bootstrap} (pid {found.pid})")
    for topic, partitions in sorted((found.topics or {}).items()):
        console.print(f"  {topic}: {partitions} partitions")


def setup() -> None:
    """Resolve Spark's Delta and Kafka jars and the broker's jars from Maven Central (once)."""
    from broker.jars import ensure_broker_jars
    from streaming.session import build_spark_session

    cfg = config()
    with console.status("Resolving the Kafka broker's jars"):
        ensure_broker_jars(Path(cfg.home))
    with console.status("Resolving Spark's Delta and Kafka jars"):
        build_spark_session(cfg).stop()
    console.print("Jars ready under " + cfg.home)
