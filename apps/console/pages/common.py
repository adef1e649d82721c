"""What the page routers share: the console state, query-string parsing, charts, errors."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import HTMLResponse

from apps.console import charts
from apps.console.security import WriteRefused

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from apps.console.app import ConsoleState

log = logging.getLogger(__name__)

# Rows a page table shows at most; the rest is counted and reachable through filters or CSV.
TABLE_LIMIT = 200
TEXT_LIMIT = 200  # characters kept of a free-text filter value


def state(request: Request) -> ConsoleState:
    """The console's shared state."""
    return request.app.state.console


def chart(fig: go.Figure) -> str:
    """A figure as script-safe JSON for the page's `chart` macro."""
    return charts.to_json(fig)


def text_param(value: str | None) -> str | None:
    """A free-text filter: stripped, bounded, None when empty."""
    if value is None:
        return None
    value = value.strip()[:TEXT_LIMIT]
    return value or None


def date_param(value: str | None) -> tuple[dt.date | None, str | None]:
    """(date, problem): a YYYY-MM-DD filter, or a sentence saying why it is not one."""
    value = text_param(value)
    if value is None:
        return None, None
    try:
        return dt.date.fromisoformat(value), None
    except ValueError:
        return None, f"'{value}' is not a date (YYYY-MM-DD); the filter was ignored."


def refused(request: Request, status: int, message: str) -> HTMLResponse:
    """The page that says why a request was refused."""
    return state(request).page(
        request, "refused.html", "", status_code=status, message=message, status=status
    )


async def checked_form(request: Request, write: bool) -> tuple[dict, HTMLResponse | None]:
    """A POST's form, and the refusal page when the write guard refuses it (`write`: it
    changes data, so it also needs a logged-in session)."""
    form = dict(await request.form())
    guard = state(request).guard
    try:
        (guard.check_write if write else guard.check_post)(*post_context(request), form)
    except WriteRefused as refusal:
        log.warning("Refused POST %s: %s", request.url.path, refusal.message)
        return form, refused(request, refusal.status, refusal.message)
    return form, None


def post_context(request: Request) -> tuple[dict[str, str], str, dict]:
    """What the write guard checks a POST against: its headers (lower-case names), the
    console's own origin as this request reached it, and the session."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return headers, f"{request.url.scheme}://{request.url.netloc}", request.session
