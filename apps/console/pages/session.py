"""Log in with the console token (writes need it) and log out."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from apps.console.pages.common import checked_form, refused, state

router = APIRouter()


@router.post("/login")
async def log_in(request: Request) -> Response:
    """Check the typed token; a right one marks this session as allowed to write."""
    console = state(request)
    form, refusal = await checked_form(request, write=False)
    if refusal is not None:
        return refusal
    if not console.guard.writes_enabled:
        return refused(request, 403, "The console is read-only: no token is configured.")
    # A wrong token waits a little before the answer: off the event loop.
    typed = str(form.get("token", ""))
    if not await run_in_threadpool(console.guard.log_in, request.session, typed):
        return refused(request, 401, "That is not the console token.")
    request.session["flash"] = "Logged in: you can acknowledge alerts."
    return RedirectResponse(_safe_next(str(form.get("next", ""))), status_code=303)


@router.post("/logout")
async def log_out(request: Request) -> Response:
    """Forget this session's log-in."""
    form, refusal = await checked_form(request, write=False)
    if refusal is not None:
        return refusal
    request.session.clear()
    request.session["flash"] = "Logged out."
    return RedirectResponse(_safe_next(str(form.get("next", ""))), status_code=303)


def _safe_next(target: str) -> str:
    """A path of this console to return to (never another site)."""
    return (
        target if re.fullmatch(r"/[A-Za-z0-9_/?=&%+.\-]*", target) and "//" not in target else "/"
    )
