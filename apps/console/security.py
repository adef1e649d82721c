"""Who may change what through the console, and from where.

- Reads need nothing: the console binds to loopback unless told otherwise, and binding
  anywhere else needs the write token to be set (`check_bind`).
- Writes (acknowledging an alert) need the token from PITSTOP_CONSOLE_TOKEN, typed once
  into the log-in form; the signed session cookie (HttpOnly, SameSite=Strict) then marks the
  session as logged in. No token set: the console is read-only and says so.
- Every write is a POST that carries the session's synchronizer token (CSRF) and comes
  from the console's own origin (Origin, else Referer); the Host header must name the
  console itself (a DNS-rebinding page cannot pass for it).
- The token is compared in constant time and never written to a page or a log.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.errors import PitstopError

log = logging.getLogger(__name__)

TOKEN_ENV = "PITSTOP_CONSOLE_TOKEN"
MIN_TOKEN_LENGTH = 16
CSRF_FIELD = "csrf_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# A wrong token costs the guesser this long (the token itself has >= 16 random characters).
FAILED_LOGIN_DELAY_S = 0.5


class ConsoleSecurityError(PitstopError):
    """The console cannot start this way; the message says what to change."""


class WriteRefused(Exception):
    """A write that may not happen: `status` is the HTTP status, `message` one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_token(environ: dict[str, str] | None = None) -> str | None:
    """The write token from PITSTOP_CONSOLE_TOKEN (None when unset or empty)."""
    value = (environ if environ is not None else os.environ).get(TOKEN_ENV, "").strip()
    if not value:
        return None
    if len(value) < MIN_TOKEN_LENGTH:
        raise ConsoleSecurityError(
            f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters long; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`."
        )
    return value


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address) is this machine's loopback."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a write token (one sentence)."""
    if not is_loopback(host) and token is None:
        raise ConsoleSecurityError(
            f"Refusing to listen on {host} without {TOKEN_ENV} set: beyond loopback the "
            "console needs a write token (or use the default --host 127.0.0.1)."
        )


def allowed_hosts(host: str) -> list[str]:
    """Host header values the console answers to: loopback names and the bound address
    (any, when bound to every interface, where a proxy or DNS name may front it)."""
    name = host.strip("[]")
    if name in ("0.0.0.0", "::"):
        return ["*"]
    return sorted({*LOOPBACK_NAMES, f"[{LOOPBACK_NAMES[2]}]", name})


@dataclass(frozen=True)
class WriteGuard:
    """The write rules of one console: its token (None: read-only)."""

    token: str | None

    @property
    def writes_enabled(self) -> bool:
        """Whether any write is possible (a token is configured)."""
        return self.token is not None

    @staticmethod
    def csrf_token(session: dict[str, Any]) -> str:
        """The session's synchronizer token, made on first use."""
        if CSRF_FIELD not in session:
            session[CSRF_FIELD] = secrets.token_urlsafe(32)
        return session[CSRF_FIELD]

    def logged_in(self, session: dict[str, Any]) -> bool:
        """Whether this session typed the token (and writes are on)."""
        return self.writes_enabled and session.get("auth") is True

    def check_post(self, headers: dict[str, str], own_origin: str, session: dict, form: dict):
        """Refuse a POST that is not from our own page of this session (origin, then CSRF)."""
        origin = headers.get("origin")
        if origin is None or origin == "null":
            referer = headers.get("referer")
            origin = _origin_of(referer) if referer else None
        if origin != own_origin:
            raise WriteRefused(403, "Refused: the request did not come from the console's pages.")
        expected = session.get(CSRF_FIELD)
        sent = form.get(CSRF_FIELD)
        if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
            raise WriteRefused(
                403, "Refused: the form is stale or not from this session; reload the page."
            )

    def check_write(self, headers: dict[str, str], own_origin: str, session: dict, form: dict):
        """Refuse a write unless it passes `check_post` and the session is logged in."""
        self.check_post(headers, own_origin, session, form)
        if not self.writes_enabled:
            raise WriteRefused(403, f"Refused: the console is read-only ({TOKEN_ENV} is not set).")
        if not self.logged_in(session):
            raise WriteRefused(401, "Refused: log in with the console token first.")

    def log_in(self, session: dict[str, Any], typed: str) -> bool:
        """Mark the session logged in when `typed` is the token; a new CSRF token either way
        (a session cannot be fixed in advance by whoever planted its cookie)."""
        ok = self.writes_enabled and hmac.compare_digest(
            typed.encode("utf-8"), str(self.token).encode("utf-8")
        )
        session.clear()
        if ok:
            session["auth"] = True
            log.info("A console session logged in")
        else:
            log.warning("A console log-in with a wrong token was refused")
            time.sleep(FAILED_LOGIN_DELAY_S)
        self.csrf_token(session)
        return ok


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"
