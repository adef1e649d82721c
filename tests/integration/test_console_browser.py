"""The console in a real browser: Debian's chromium driven by Playwright, against
`pitstop console` (a real process) over a lake the battery flow wrote, with the test broker.

Every page is opened and screenshot into .pitstop/test-artifacts/console/; an operator logs
in and acknowledges an alert, and the Delta row changes; a quarantined `<script>` payload
shows as text and runs nothing; a form posted from another origin changes nothing.
Skips, saying why, where chromium or Playwright is missing (`make test` installs both).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.lake import read_table
from tests.console_fixtures import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    SCRIPT_PAYLOAD,
    console_process,
    free_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".pitstop" / "test-artifacts" / "console"
TOKEN = "browser-test-token-0123456789"
PAGES = {
    "fleet": "/",
    "battery": "/battery?battery_id=B000003",
    "alerts": "/alerts",
    "quarantine": "/quarantine",
    "models": "/models",
    "model-card": "/models/card?name=battery-cycles-rnn&version=1",
    "stream": "/stream",
}
# Pages whose data always holds something to chart in this lake.
CHARTED = {"fleet", "battery", "quarantine", "models", "stream"}


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (make setup installs it)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM}: `apt-get install chromium` (make setup tries)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def console(console_lake, kafka_bootstrap, tmp_path_factory):
    cfg = console_lake.model_copy(
        update={
            "kafka": console_lake.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})
        }
    )
    log = tmp_path_factory.mktemp("console") / "console.log"
    with console_process(cfg, TOKEN, log) as base:
        yield base
    assert TOKEN not in log.read_text(encoding="utf-8")  # the token never reaches the log


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.problems = []  # console errors, uncaught exceptions and dialogs, for the asserts
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))

    def on_dialog(dialog):
        page.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    context.close()


@pytest.fixture(scope="module", autouse=True)
def fresh_artifacts():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def screenshot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_renders_with_its_charts(console, page, name):
    response = page.goto(console + PAGES[name])
    assert response.status == 200
    page.wait_for_load_state("networkidle")
    if name in CHARTED:
        page.wait_for_selector("body[data-charts-drawn=true]")
        assert page.locator("div.chart .main-svg").count() >= 1
    screenshot(page, name)
    assert page.problems == []


def test_a_quarantined_script_is_shown_as_text_and_never_runs(console, page):
    page.goto(console + "/quarantine")
    page.wait_for_load_state("networkidle")
    payload = page.locator("pre.payload", has_text=SCRIPT_PAYLOAD)
    assert payload.count() == 1 and payload.inner_text() == SCRIPT_PAYLOAD
    markup = page.locator("#compliance-alerts b")
    page.goto(console + "/alerts")
    assert markup.count() == 0 and page.get_by_text("<b>clamp</b>").count() == 1
    assert page.problems == []  # no alert() dialog, no error


def test_an_operator_logs_in_and_acknowledges_an_alert(console, console_lake, page):
    page.goto(console + "/alerts?status=open")
    assert page.locator("form.ack").count() == 0  # not logged in: no forms
    page.fill("#login input[name=token]", TOKEN)
    page.click("#login button")
    page.wait_for_selector("#flash")
    page.goto(console + "/alerts?status=open")
    row = page.locator("#battery-alerts tr[data-alert-id]").first
    alert_id = row.get_attribute("data-alert-id")
    row.locator("input[name=by]").fill("ops on call")
    row.locator("input[name=why]").fill("owner booked a service")
    screenshot(page, "alerts-acknowledging")
    row.locator("button").click()
    page.wait_for_selector("#flash")
    assert f"Alert {alert_id} acknowledged by ops on call" in page.inner_text("#flash")
    stored = read_table(console_lake, "battery_alerts", filters=[("alert_id", "=", alert_id)])
    assert stored["status"].item() == "acknowledged"
    assert stored["close_reason"].item() == "acknowledged by ops on call: owner booked a service"
    assert page.locator(f"tr[data-alert-id='{alert_id}']").count() == 0  # left the open list
    screenshot(page, "alerts-acknowledged")
    assert page.problems == []


@contextmanager
def attacker_site(page_html: str) -> Iterator[str]:
    """Another web site on loopback (another port: same site, another origin) serving one
    page; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_form_from_another_origin_changes_nothing(console, console_lake, page):
    """A logged-in operator visits another site whose page posts an acknowledgement to the
    console. Same site (127.0.0.1, another port), so the SameSite cookie goes along: the
    browser's Origin header and the missing CSRF token get it refused."""
    page.goto(console + "/alerts")
    page.fill("#login input[name=token]", TOKEN)
    page.click("#login button")
    page.wait_for_selector("#flash")
    open_ids = read_table(console_lake, "battery_alerts", filters=[("status", "=", "open")])
    target = str(open_ids["alert_id"].iloc[0])
    fields = {"alert_id": target, "kind": "battery", "by": "mallory", "why": "cross-site"}
    inputs = "".join(f'<input name="{k}" value="{v}">' for k, v in fields.items())
    attack = (
        f'<form id="f" method="post" action="{console}/alerts/ack">{inputs}</form>'
        '<script>document.getElementById("f").submit();</script>'
    )
    with attacker_site(attack) as evil:
        page.goto(evil)
        page.wait_for_selector("#refused")
    assert page.url == console + "/alerts/ack"
    assert "did not come from the console" in page.inner_text("#refused")
    screenshot(page, "cross-site-refused")
    stored = read_table(console_lake, "battery_alerts", filters=[("alert_id", "=", target)])
    assert stored["status"].item() == "open"
