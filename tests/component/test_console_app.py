"""The console over HTTP: a real server (uvicorn) on a lake the battery flow wrote.

Every page answers; payloads stay text; writes need a log-in, the session's CSRF token and
our own origin; an acknowledgement changes the Delta row; unchanged tables are not rescanned.
"""

from __future__ import annotations

import re

import pytest
import requests

from core.lake import read_table
from tests.console_fixtures import SCRIPT_PAYLOAD, console_thread

pytestmark = pytest.mark.component

TOKEN = "component-test-token-0123456789"
PAGES = [
    "/",
    "/battery?battery_id=B000003",
    "/battery",
    "/alerts",
    "/alerts?status=open&car=C00003&since=2024-01-01&until=2025-01-01",
    "/quarantine",
    "/quarantine?reason=not_json",
    "/models",
    "/models/card?name=battery-cycles-rnn&version=1",
    "/stream",
]


@pytest.fixture(scope="module")
def console(console_lake):
    with console_thread(console_lake, TOKEN) as (base, app):
        yield base, app


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def logged_in(base: str) -> tuple[requests.Session, str]:
    """A session that typed the token; returns it and its current CSRF token."""
    session = requests.Session()
    page = session.get(base + "/alerts", timeout=30)
    response = session.post(
        base + "/login",
        data={"csrf_token": csrf_of(page.text), "token": TOKEN, "next": "/alerts"},
        headers={"Origin": base},
        timeout=30,
    )
    assert response.status_code == 200 and "Logged in" in response.text
    return session, csrf_of(response.text)


def open_alert(cfg) -> str:
    alerts = read_table(cfg, "battery_alerts")
    return str(alerts.loc[alerts["status"] == "open", "alert_id"].iloc[0])


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers(console, path):
    base, _ = console
    response = requests.get(base + path, timeout=60)
    assert response.status_code == 200, response.text[-500:]
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-frame-options"] == "DENY"
    assert "cdn" not in response.text.lower()


def test_pages_show_their_data(console):
    base, _ = console
    fleet = requests.get(base + "/", timeout=30).text
    assert "B000003" in fleet and 'id="status-chart"' in fleet
    battery = requests.get(base + "/battery?battery_id=B000003", timeout=30).text
    assert "Predicted to reach" in battery or "Not expected to reach" in battery
    assert "battery-cycles-rnn v1" in battery
    models = requests.get(base + "/models", timeout=30).text
    assert "champion" in models and 'id="live"' in models
    card = requests.get(base + "/models/card?name=battery-cycles-rnn&version=1", timeout=30).text
    assert "<h1>Model card: battery-cycles-rnn, version 1</h1>" in card
    missing = requests.get(base + "/battery?battery_id=nope", timeout=30).text
    assert "Battery nope has no readings in telemetry." in missing


def test_payloads_and_notes_are_text_not_markup(console):
    base, _ = console
    quarantine = requests.get(base + "/quarantine", timeout=30).text
    assert SCRIPT_PAYLOAD not in quarantine
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in quarantine
    alerts = requests.get(base + "/alerts", timeout=30).text
    assert "<b>clamp</b>" not in alerts and "&lt;b&gt;clamp&lt;/b&gt;" in alerts
    csv = requests.get(base + "/quarantine.csv", timeout=30)
    assert csv.headers["content-type"].startswith("text/csv")
    assert SCRIPT_PAYLOAD in csv.text  # the download is the raw data


def test_plotly_is_served_by_the_console_itself(console):
    base, _ = console
    bundle = requests.get(base + "/static-vendor/plotly.min.js", timeout=30)
    assert bundle.status_code == 200 and b"plotly" in bundle.content[:2000].lower()


def test_a_foreign_host_header_is_refused(console):
    base, _ = console
    response = requests.get(base + "/", headers={"Host": "evil.example"}, timeout=30)
    assert response.status_code == 400


def test_writes_without_log_in_csrf_or_our_origin_are_refused(console, console_lake):
    base, _ = console
    alert_id = open_alert(console_lake)
    anonymous = requests.Session()
    csrf = csrf_of(anonymous.get(base + "/alerts", timeout=30).text)
    form = {"alert_id": alert_id, "kind": "battery", "by": "mallory", "why": "x"}
    response = anonymous.post(
        base + "/alerts/ack", data={**form, "csrf_token": csrf}, headers={"Origin": base}
    )
    assert response.status_code == 401 and "log in" in response.text

    session, csrf = logged_in(base)
    for headers, token in (
        ({"Origin": base}, "forged"),
        ({"Origin": "http://evil.example"}, csrf),
        ({}, csrf),
    ):
        response = session.post(
            base + "/alerts/ack", data={**form, "csrf_token": token}, headers=headers, timeout=30
        )
        assert response.status_code == 403, headers
    wrong = requests.Session()
    page = wrong.get(base + "/alerts", timeout=30)
    response = wrong.post(
        base + "/login",
        data={"csrf_token": csrf_of(page.text), "token": "not-the-token-0123456789"},
        headers={"Origin": base},
        timeout=30,
    )
    assert response.status_code == 401
    alerts = read_table(console_lake, "battery_alerts")
    assert alerts.loc[alerts["alert_id"] == alert_id, "status"].item() == "open"


def test_an_acknowledgement_changes_the_row_and_the_page(console, console_lake):
    base, app = console
    lake = app.state.console.lake
    requests.get(base + "/", timeout=30)
    scans = lake.misses
    requests.get(base + "/", timeout=30)
    assert lake.misses == scans  # unchanged tables: nothing read again

    alert_id = open_alert(console_lake)
    session, csrf = logged_in(base)
    response = session.post(
        base + "/alerts/ack",
        data={
            "csrf_token": csrf,
            "alert_id": alert_id,
            "kind": "battery",
            "by": "Dana O'Brien",
            "why": "battery replaced at the dealer",
            "back": "/alerts?status=open",
        },
        headers={"Origin": base},
        timeout=30,
    )
    assert response.status_code == 200 and f"Alert {alert_id} acknowledged" in response.text
    row = read_table(console_lake, "battery_alerts", filters=[("alert_id", "=", alert_id)])
    assert row["status"].item() == "acknowledged"
    assert row["close_reason"].item() == (
        "acknowledged by Dana O'Brien: battery replaced at the dealer"
    )
    assert row["closed_at"].notna().item()
    fleet = requests.get(base + "/", timeout=30)
    assert lake.misses > scans and fleet.status_code == 200


def test_a_console_without_a_token_is_read_only(console_lake):
    with console_thread(console_lake, None) as (base, _):
        session = requests.Session()
        page = session.get(base + "/alerts", timeout=30).text
        assert "Read-only: set PITSTOP_CONSOLE_TOKEN" in page and 'name="token"' not in page
        assert "<form" not in page.split("<main>")[1].split("Battery alerts")[1]  # no ack forms
        response = session.post(
            base + "/login",
            data={"csrf_token": "none", "token": TOKEN},
            headers={"Origin": base},
            timeout=30,
        )
        assert response.status_code == 403 and TOKEN not in response.text
