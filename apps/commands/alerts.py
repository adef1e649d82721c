"""`pitstop alerts [ack]`: list the alerts from Delta (no JVM) and acknowledge one."""

from __future__ import annotations

import datetime as dt
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from apps.commands.common import OutputFormat, config, console


class AlertKind(str, Enum):
    """Which alert table to read."""

    battery = "battery"
    compliance = "compliance"


def list_alerts(
    ctx: typer.Context,
    kind: Annotated[AlertKind, typer.Option(help="battery or compliance")] = AlertKind.battery,
    since: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="alert date on or after")
    ] = None,
    battery: Annotated[str | None, typer.Option(help="only this battery_id")] = None,
    car: Annotated[str | None, typer.Option(help="only this car_id")] = None,
    closed: Annotated[bool, typer.Option(help="include closed alerts")] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json")] = (
        OutputFormat.table
    ),
) -> None:
    """List alerts from the Delta alert tables (no JVM: answers in about a second)."""
    if ctx.invoked_subcommand is not None:
        return
    from apps.alerts import query_alerts

    frame = query_alerts(
        config(),
        kind.value,
        since=since.date() if since else None,
        battery_id=battery,
        car_id=car,
        include_closed=closed,
    )
    print_alerts(frame, kind.value, fmt.value)


def ack(
    alert_id: Annotated[str, typer.Argument(help="the alert's id (alert_id column)")],
    by: Annotated[str | None, typer.Option(help="who acknowledged it")] = None,
    why: Annotated[str | None, typer.Option(help="why (kept in the alert's close reason)")] = None,
    kind: Annotated[
        AlertKind | None, typer.Option(help="battery or compliance [default: either]")
    ] = None,
) -> None:
    """Close an open battery or compliance alert: an operator has dealt with it."""
    from apps.alerts import AlertsError, acknowledge_alert

    if not acknowledge_alert(config(), alert_id, by, why, kind=kind.value if kind else None):
        raise AlertsError(f"No open alert with id {alert_id}.")
    console.print(f"Alert {alert_id} acknowledged")


def print_alerts(frame, kind: str, fmt: str) -> None:
    """Print alerts as a rich table, CSV or JSON lines."""
    from apps.alerts import format_alerts, table_rows

    if fmt != "table":
        sys.stdout.write(format_alerts(frame, kind, fmt))
        return
    if frame.empty:
        console.print(f"No {kind} alerts.")
        return
    headers, rows = table_rows(frame, kind)
    table = Table(title=f"{len(frame)} {kind} alert(s)")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
