"""The console's FastAPI application: shared state, middleware, templates and pages.

`create_app` wires what every page needs (the version-keyed lake cache, the registry reader,
the write guard) and registers one router per page (`apps.console.pages`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from apps.console.lake_cache import LakeCache
from apps.console.registry_reader import RegistryReader
from apps.console.security import TOKEN_ENV, WriteGuard, allowed_hosts
from apps.console.stream_status import EndOffsets
from core.config import PitstopConfig

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "pitstop_console"
SESSION_HOURS = 12
# Pages may run their own scripts and the bundled plotly.js only; plotly sets inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
)
NAV = (
    ("fleet", "/", "Fleet"),
    ("alerts", "/alerts", "Alerts"),
    ("quarantine", "/quarantine", "Quarantine"),
    ("models", "/models", "Models"),
    ("stream", "/stream", "Stream"),
)


@dataclass
class ConsoleState:
    """What the pages share: configuration, cached reads, the registry, the write rules."""

    cfg: PitstopConfig
    lake: LakeCache
    registry: RegistryReader
    guard: WriteGuard
    templates: Jinja2Templates
    end_offsets: EndOffsets

    def page(
        self,
        request: Request,
        template: str,
        active: str,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """Render `template` with what the layout needs (navigation, log-in state, CSRF)."""
        session = request.session
        base = {
            "nav": NAV,
            "active": active,
            "writes_enabled": self.guard.writes_enabled,
            "logged_in": self.guard.logged_in(session),
            "csrf_token": self.guard.csrf_token(session),
            "token_env": TOKEN_ENV,
            "flash": session.pop("flash", None),
        }
        return self.templates.TemplateResponse(
            request, template, {**base, **context}, status_code=status_code
        )


def plotly_js() -> Path:
    """The plotly.js bundle shipped inside the `plotly` Python package."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def create_app(cfg: PitstopConfig, token: str | None, host: str = "127.0.0.1") -> FastAPI:
    """The console app for `cfg`; `token` (None: read-only) guards writes, `host` is where it
    listens (the Host headers it answers to follow from it)."""
    from apps.console.pages import alerts, battery, fleet, models, quarantine, stream

    app = FastAPI(title="Pitstop console", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescapes .html
    templates.env.filters["day"] = _day
    templates.env.filters["number"] = _number
    app.state.console = ConsoleState(
        cfg=cfg,
        lake=LakeCache(cfg),
        registry=RegistryReader(cfg),
        guard=WriteGuard(token),
        templates=templates,
        end_offsets=EndOffsets(cfg),
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    # A fresh key per start: sessions end with the process, and nothing secret is stored.
    app.add_middleware(
        SessionMiddleware,
        secret_key=secrets.token_urlsafe(32),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_HOURS * 3600,
        same_site="strict",
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/static-vendor/plotly.min.js", include_in_schema=False)
    def plotly_bundle() -> FileResponse:
        # Versioned with the package; browsers may keep it.
        return FileResponse(
            plotly_js(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    for page in (fleet, battery, alerts, quarantine, models, stream):
        app.include_router(page.router)
    from apps.console.pages import session as session_routes

    app.include_router(session_routes.router)
    return app


def _day(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _number(value: Any, digits: int = 0) -> str:
    import math

    if value is None:
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return ""
    return f"{number:,.{digits}f}"
