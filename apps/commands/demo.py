"""`pitstop demo`: the whole pipeline end to end on a simulated fleet (what `make demo` runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from apps.commands.alerts import print_alerts
from apps.commands.common import config, console


def demo(
    batteries: Annotated[int | None, typer.Option(min=1, help="fleet size")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="days simulated")] = None,
) -> None:
    """Broker, model, streaming job and simulator end to end; print the alerts; shut down."""
    from apps.demo import next_steps, run_demo

    cfg = config()
    summary = run_demo(cfg, batteries=batteries, days=days, console=console)
    print_alerts(summary.alerts, "battery", "table")
    console.print(summary.line())
    for line in next_steps(cfg):
        console.print(line, highlight=False, soft_wrap=True)
