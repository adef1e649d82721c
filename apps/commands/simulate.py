"""`pitstop simulate`: a seeded fleet into Kafka, Event Hubs, IoT Hub or files."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class SinkName(str, Enum):
    kafka = "kafka"
    eventhubs = "eventhubs"
    iothub = "iothub"
    files = "files"
    null = "null"


def simulate(
    sink: Annotated[SinkName, typer.Option(help="where the events go")] = SinkName.kafka,
    batteries: Annotated[int | None, typer.Option(help="fleet size (cars)")] = None,
    days: Annotated[int | None, typer.Option(help="days to simulate")] = None,
    start_date: Annotated[str | None, typer.Option(help="first day, YYYY-MM-DD")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (same seed, same fleet)")] = None,
    rate: Annotated[float | None, typer.Option(help="at most this many events/s")] = None,
    speed: Annotated[
        float | None, typer.Option(help="at most this many simulated days per second")
    ] = None,
    failure_rate: Annotated[
        float, typer.Option(help="share of batteries with a weak cell that fails early")
    ] = 0.02,
    output: Annotated[
        Path | None, typer.Option(help="files output and ground truth folder")
    ] = None,
    notes: Annotated[bool, typer.Option(help="also send technicians' component notes")] = True,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    message_timeout: Annotated[
        float, typer.Option(help="seconds Kafka retries a message before it counts as failed")
    ] = 60.0,
) -> None:
    """Simulate a fleet's daily battery readings (and notes) with ground truth beside them."""
    from rich.console import Console

    from core.config import load_config
    from simulator.errors import SimulatorError
    from simulator.run import run_simulation

    for name, value in (("--batteries", batteries), ("--days", days)):
        if value is not None and value < 1:
            raise SimulatorError(f"{name} must be a positive number, got {value}.")
    summary = run_simulation(
        load_config(),
        sink=sink.value,
        batteries=batteries,
        days=days,
        start_date=start_date,
        seed=seed,
        rate=rate,
        speed=speed,
        failure_rate=failure_rate,
        output_dir=output,
        notes=notes,
        progress=progress,
        message_timeout_s=message_timeout,
    )
    Console().print(summary.line())
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.failed or summary.stopped_reason:
        raise typer.Exit(1)
