"""The console's write rules: bind, token, origin and CSRF checks."""

from __future__ import annotations

import pytest

from apps.console.security import (
    TOKEN_ENV,
    ConsoleSecurityError,
    WriteGuard,
    WriteRefused,
    allowed_hosts,
    check_bind,
    is_loopback,
    read_token,
)

pytestmark = pytest.mark.unit

TOKEN = "s3cret-token-0123456789"
OWN = "http://127.0.0.1:8501"


def test_token_comes_from_the_environment_and_must_be_long():
    assert read_token({}) is None
    assert read_token({TOKEN_ENV: "  "}) is None
    assert read_token({TOKEN_ENV: TOKEN}) == TOKEN
    with pytest.raises(ConsoleSecurityError, match="at least 16 characters") as caught:
        read_token({TOKEN_ENV: "short"})
    assert "short" not in str(caught.value)


def test_loopback_names_and_addresses():
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.com"):
        assert not is_loopback(host), host


def test_binding_beyond_loopback_needs_the_token():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ConsoleSecurityError, match=f"without {TOKEN_ENV} set") as caught:
        check_bind("0.0.0.0", None)
    message = str(caught.value)
    assert message.endswith(".") and ". " not in message and "\n" not in message  # one sentence


def test_allowed_hosts_follow_the_bind_address():
    assert "127.0.0.1" in allowed_hosts("127.0.0.1") and "localhost" in allowed_hosts("::1")
    assert "10.1.2.3" in allowed_hosts("10.1.2.3")
    assert allowed_hosts("0.0.0.0") == ["*"]


def session_and_form() -> tuple[dict, dict]:
    session: dict = {}
    csrf = WriteGuard.csrf_token(session)
    assert WriteGuard.csrf_token(session) == csrf  # made once per session
    return session, {"csrf_token": csrf}


def test_a_logged_in_post_from_our_own_page_passes():
    guard = WriteGuard(TOKEN)
    session, form = session_and_form()
    assert guard.log_in(session, TOKEN)
    form["csrf_token"] = session["csrf_token"]  # log-in issues a fresh one
    guard.check_write({"origin": OWN}, OWN, session, form)
    guard.check_write({"referer": OWN + "/alerts?status=open"}, OWN, session, form)


@pytest.mark.parametrize(
    ("headers", "csrf", "status", "words"),
    [
        ({"origin": "http://evil.example"}, None, 403, "did not come from"),
        ({"referer": "http://evil.example/x"}, None, 403, "did not come from"),
        ({}, None, 403, "did not come from"),
        ({"origin": "null"}, None, 403, "did not come from"),
        ({"origin": OWN}, "forged", 403, "stale or not from this session"),
        ({"origin": OWN}, "", 403, "stale or not from this session"),
    ],
)
def test_posts_from_elsewhere_or_without_the_session_token_are_refused(
    headers, csrf, status, words
):
    guard = WriteGuard(TOKEN)
    session, form = session_and_form()
    guard.log_in(session, TOKEN)
    form["csrf_token"] = session["csrf_token"] if csrf is None else csrf
    with pytest.raises(WriteRefused, match=words) as caught:
        guard.check_write(headers, OWN, session, form)
    assert caught.value.status == status


def test_writes_need_a_log_in_and_a_token_configured():
    session, form = session_and_form()
    with pytest.raises(WriteRefused, match="log in") as caught:
        WriteGuard(TOKEN).check_write({"origin": OWN}, OWN, session, form)
    assert caught.value.status == 401
    with pytest.raises(WriteRefused, match="read-only"):
        WriteGuard(None).check_write({"origin": OWN}, OWN, session, form)


def test_a_wrong_token_does_not_log_in_and_rotates_the_csrf_token():
    guard = WriteGuard(TOKEN)
    session, form = session_and_form()
    session["auth"] = "forged"
    assert not guard.log_in(session, "not-the-token-at-all")
    assert not guard.logged_in(session)
    assert session["csrf_token"] != form["csrf_token"]
    assert not WriteGuard(None).log_in({}, "")
