"""`pitstop serve`: start the endpoint on a free port, score, send bad requests, stop it.

The server runs as its own process (`python -m apps.commands.serve`), pointed at a temporary
MLflow store through PITSTOP__ environment variables, exactly as a user would run it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import PitstopConfig
from tests.conftest import make_test_config
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120
COLUMNS = ["daily_cycles", "lifetime_cycles_used", "battery_rated_cycles", "battery_age_days"]


@dataclass
class Endpoint:
    base: str
    process: subprocess.Popen

    def get(self, path: str) -> int:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return response.status

    def post(self, body: bytes | str, content_type: str | None = "application/json") -> tuple:
        """(status, parsed JSON or raw text) of a POST to /invocations."""
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.base + "/invocations", data=data, method="POST")
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        else:
            request.remove_header("Content-type")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text


@contextlib.contextmanager
def serving(cfg: PitstopConfig, log_path: Path, *args: str) -> Iterator[Endpoint]:
    """Run the endpoint in its own process group until the block ends; never leave it behind."""
    port = free_port()
    env = {
        **os.environ,
        "PITSTOP__MLFLOW__TRACKING_URI": cfg.mlflow.tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "apps.commands.serve", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = Endpoint(f"http://127.0.0.1:{port}", process)
    try:
        _wait_until_healthy(endpoint, log_path)
        yield endpoint
    finally:
        _stop(process)
        assert process.poll() is not None
        with pytest.raises(OSError):
            endpoint.get("/ping")  # nothing listens any more


def _wait_until_healthy(endpoint: Endpoint, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if endpoint.process.poll() is not None:
            pytest.fail(f"the endpoint exited early:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if endpoint.get("/ping") == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"the endpoint was not healthy in {START_TIMEOUT_S}s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def row(days: int = 60, **changes) -> dict:
    week = [1.2, 1.1, 1.2, 1.3, 1.4, 0.7, 0.5]
    values = {
        "daily_cycles": (week * 10)[:days],
        "lifetime_cycles_used": 412.5,
        "battery_rated_cycles": 500.0,
        "battery_age_days": 388.0,
    }
    return {**values, **changes}


@pytest.fixture(scope="module")
def forecaster(trained_config: PitstopConfig, tmp_path_factory) -> Iterator[Endpoint]:
    log_path = tmp_path_factory.mktemp("serve") / "forecaster.log"
    with serving(trained_config, log_path) as endpoint:
        yield endpoint


def test_health_and_version(forecaster: Endpoint) -> None:
    assert forecaster.get("/ping") == 200
    assert forecaster.get("/health") == 200
    assert forecaster.get("/version") == 200


def test_scores_the_contract_input(forecaster: Endpoint) -> None:
    split = {"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in (row(), row(7))]}
    status, body = forecaster.post(json.dumps({"dataframe_split": split}))
    assert status == 200, body
    # The contract's output frame, one record per row: the forecast and its quantile arrays.
    predictions = [p["forecast"] for p in body["predictions"]]
    assert len(predictions) == 2 and all(len(p) == 30 for p in predictions)
    assert all(0 <= value < 10 for p in predictions for value in p)
    assert all(len(p["cum_q90"]) == 30 for p in body["predictions"])
    status, body = forecaster.post(json.dumps({"dataframe_records": [row(30)]}))
    assert status == 200 and len(body["predictions"][0]["forecast"]) == 30


def without(record: dict, column: str) -> dict:
    return {k: v for k, v in record.items() if k != column}


BAD_REQUESTS = {
    "missing column": json.dumps({"dataframe_records": [without(row(), "battery_age_days")]}),
    "wrong column": json.dumps(
        {"dataframe_records": [{**without(row(), "daily_cycles"), "cycles": [1.0, 2.0]}]}
    ),
    "history longer than the window": json.dumps({"dataframe_records": [row(61)]}),
    "empty history": json.dumps({"dataframe_records": [row(daily_cycles=[])]}),
    "negative cycles": json.dumps({"dataframe_records": [row(daily_cycles=[1.0, -2.0])]}),
    "text in history": json.dumps({"dataframe_records": [row(daily_cycles=[1.0, "a"])]}),
    "not JSON": "daily_cycles=1,2,3",
    "JSON list": json.dumps([row()]),
    "no input key": json.dumps({"rows": [row()]}),
}


@pytest.mark.parametrize("kind", list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_with_a_reason(forecaster: Endpoint, kind: str) -> None:
    status, answer = forecaster.post(BAD_REQUESTS[kind])
    assert 400 <= status < 500, (kind, status, answer)
    assert answer["message"], kind


def test_the_reason_is_the_contract_rule(forecaster: Endpoint) -> None:
    status, answer = forecaster.post(BAD_REQUESTS["history longer than the window"])
    assert status == 400 and "holds 61 days; this model takes at most 60" in answer["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_missing_or_unknown_content_type_is_415(forecaster: Endpoint, content_type) -> None:
    status, _ = forecaster.post(json.dumps({"dataframe_records": [row()]}), content_type)
    assert status == 415


def test_compliance_model_is_servable_the_same_way(tmp_path: Path) -> None:
    from apps.training_data import train_compliance_on_simulated_notes

    cfg = make_test_config(tmp_path)
    train_compliance_on_simulated_notes(
        cfg, seed=0, train_size=200, val_size=100, holdout_size=400, epochs=1
    )
    with serving(cfg, tmp_path / "compliance.log", "--model", "component-compliance") as api:
        notes = ["mfd 1993 cast iron water pump, cond. fair", "Steel bracket, 2010, good"]
        status, body = api.post(json.dumps({"dataframe_records": [{"text": t} for t in notes]}))
        assert status == 200 and len(body["predictions"]) == 2
        assert all(0.0 <= p <= 1.0 for p in body["predictions"])
        status, _ = api.post(json.dumps({"dataframe_records": [{"note": notes[0]}]}))
        assert status == 400


def test_unknown_model_is_one_sentence(trained_config: PitstopConfig) -> None:
    env = {**os.environ, "PITSTOP__MLFLOW__TRACKING_URI": trained_config.mlflow.tracking_uri}
    command = [sys.executable, "-m", "apps.commands.serve", "--model", "no-such-model"]
    done = subprocess.run(
        [*command, "--port", str(free_port())],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "error:" in done.stderr and "Traceback" not in done.stderr
