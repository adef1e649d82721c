"""A real-time endpoint: one registered model, by alias, behind MLflow's scoring server.

The model is resolved (alias -> version) and loaded before the server binds its port, so
`/ping` and `/health` answer 200 only once a model is loaded; until then the port is
closed. `/invocations` is MLflow's scoring protocol (`dataframe_split`,
`dataframe_records`, ...). Bad requests get 4xx with MLflow's reason: the forecast
contract's own checks raise MLflow's INVALID_PARAMETER_VALUE (see `models.forecasting.pyfunc`).
The server runs in this process (MLflow's FastAPI app on uvicorn), which is what
`mlflow models serve --env-manager local` runs too, minus a second interpreter.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Any

from core.config import PitstopConfig
from core.errors import PitstopError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class ServeError(PitstopError, RuntimeError):
    """The endpoint cannot start; the message says what to change."""


@dataclass(frozen=True)
class ServedModel:
    """A loaded pyfunc and where it came from."""

    name: str
    version: str
    model_uri: str
    pyfunc: Any

    def describe(self) -> str:
        """`name version N` for messages."""
        return f"{self.name} version {self.version}" if self.version else self.model_uri


def point_mlflow(cfg: PitstopConfig) -> None:
    """Use the configured tracking and registry stores (nothing is created)."""
    import mlflow

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or cfg.mlflow.tracking_uri)


def check_port_free(host: str, port: int) -> None:
    """Raise ServeError when `host:port` cannot be bound (fail before the slow model load)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(
                f"Cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host."
            ) from None


def load_served_model(model: str, alias: str = "champion") -> ServedModel:
    """Load registered model `model` at `alias`, or `model` itself when it is a URI."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if ":/" in model:
        name, version, uri = model, "", model
    else:
        from models.registry import RegistryError, resolve_alias

        try:
            version, uri = resolve_alias(model, alias)
        except RegistryError as exc:
            raise ServeError(str(exc)) from None
        name = model
    try:
        pyfunc = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        reason = str(getattr(exc, "message", exc)).strip().splitlines()[0]
        raise ServeError(f"Could not load {uri}: {reason}") from None
    log.info("Loaded %s from %s", name, uri)
    return ServedModel(name=name, version=version, model_uri=uri, pyfunc=pyfunc)


def build_scoring_app(model: ServedModel) -> Any:
    """MLflow's scoring server app (FastAPI) around a loaded model.

    One gap is closed in front of it: MLflow answers 500 to a POST without a Content-Type
    header; here that is a 415 naming the types it takes.
    """
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(model.pyfunc)

    @app.middleware("http")
    async def require_content_type(request: Request, call_next: Any) -> Any:
        if request.method == "POST" and not request.headers.get("content-type", "").strip():
            return JSONResponse(
                status_code=415,
                content={
                    "error_code": "BAD_REQUEST",
                    "message": "Set a Content-Type header: application/json (dataframe_split "
                    "or dataframe_records), text/csv or application/vnd.apache.parquet.",
                },
            )
        return await call_next(request)

    return app


def run_server(app: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve `app` with uvicorn until interrupted (Ctrl-C or SIGTERM stop it cleanly)."""
    import uvicorn

    if not _is_loopback(host):
        log.warning("Serving on %s: the endpoint has no authentication; keep it private", host)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
