"""The MLflow registry as the console sees it: versions, aliases, offline metrics, model cards.

Read-only through MLflow's client (`models.registry`). The registry has no cheap version
number to key a cache on, so answers are kept for a few seconds: a page reload does not
query it again, an alias moved by `pitstop models promote` shows within `ttl_s`.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from core.config import PitstopConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


class RegistryUnavailable(Exception):
    """The MLflow store cannot be read; the message says why in one sentence."""


class RegistryReader:
    """Cached reads of the configured MLflow tracking and registry stores."""

    def __init__(self, cfg: PitstopConfig, ttl_s: float = 10.0) -> None:
        self._cfg = cfg
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._kept: dict[Any, tuple[float, Any]] = {}
        self._ready = False

    def _connect(self) -> None:
        """Point MLflow at the configured stores, without creating one that is not there."""
        if self._ready:
            return
        tracking = self._cfg.mlflow.tracking_uri
        if tracking.startswith("sqlite:///") and not Path(tracking[len("sqlite:///") :]).exists():
            raise RegistryUnavailable(
                "No MLflow store yet: train a model (`pitstop train rnn` or `make demo`)."
            )
        from models.serving.server import point_mlflow

        point_mlflow(self._cfg)
        self._ready = True

    def _cached(self, key: Any, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and now - kept[0] < self._ttl:
                return kept[1]
        value = compute()
        with self._lock:
            self._kept[key] = (now, value)
        return value

    def versions(self) -> pd.DataFrame:
        """Every registered version with its aliases and offline holdout metrics."""
        from mlflow.exceptions import MlflowException

        from models.registry import list_models

        def compute() -> pd.DataFrame:
            self._connect()
            try:
                return list_models()
            except MlflowException as exc:
                raise RegistryUnavailable(f"MLflow: {_first_line(exc)}") from None

        return self._cached("versions", compute)

    def model_card(self, name: str, version: str) -> str | None:
        """The Markdown model card logged with the version's run (None: it has none)."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        from models.reporting.model_card import CARD_FILE

        def compute() -> str | None:
            self._connect()
            client = MlflowClient()
            try:
                run_id = client.get_model_version(name, version).run_id
                if not run_id:
                    return None
                with tempfile.TemporaryDirectory() as folder:
                    path = client.download_artifacts(run_id, CARD_FILE, folder)
                    return Path(path).read_text(encoding="utf-8")
            except (MlflowException, OSError) as exc:
                log.info("No model card for %s v%s: %s", name, version, _first_line(exc))
                return None

        return self._cached(("card", name, version), compute)


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
