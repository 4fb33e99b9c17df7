"""Sign-in hardening: audited sign-ins, lockout, idle timeout, security headers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate
from django.test import override_settings
from django.utils import timezone

from console import security
from console.models import AuditEvent
from console.roles import Role, set_role

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-password"


@pytest.fixture
def ana(django_user_model):
    user = django_user_model.objects.create_user("ana", password=PASSWORD)
    set_role(user, Role.VIEWER)
    return user


def sign_in(client, password=PASSWORD, username="ana", ip="10.1.1.1"):
    return client.post(
        "/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=ip,
        HTTP_USER_AGENT="pytest-browser",
    )


def actions():
    return list(AuditEvent.objects.order_by("id").values_list("action", "target"))


# --- audit of sign-in and sign-out


def test_sign_in_and_sign_out_are_audited(client, ana):
    assert sign_in(client).status_code == 302
    client.post("/logout/", REMOTE_ADDR="10.1.1.1")
    assert actions() == [("login.success", "ana"), ("logout", "ana")]
    login = AuditEvent.objects.get(action="login.success")
    assert login.actor == ana and str(login.ip) == "10.1.1.1"
    assert login.user_agent == "pytest-browser"


def test_failed_sign_in_keeps_the_username_never_the_password(client, ana):
    response = sign_in(client, password="wrong-password-123")
    assert response.status_code == 200 and b"Wrong username or password" in response.content
    [event] = AuditEvent.objects.all()
    assert (event.action, event.target, event.actor) == ("login.failed", "ana", None)
    stored = f"{event.target} {event.detail} {event.user_agent}"
    assert "wrong-password-123" not in stored and "*" not in stored


# --- lockout


def test_five_failures_lock_the_username_from_that_address(client, ana):
    for _ in range(security.LOCKOUT_ATTEMPTS - 1):
        assert b"Wrong username or password" in sign_in(client, password="nope-nope-nope").content
    # The fifth failure already says why the next attempts will be refused.
    assert b"Too many failed sign-ins" in sign_in(client, password="nope-nope-nope").content
    # Now even the right password is refused, with a clear reason.
    response = sign_in(client)
    assert response.status_code == 200
    assert b"Too many failed sign-ins" in response.content
    assert b"try again in 15 minutes" in response.content
    assert "_auth_user_id" not in client.session
    assert actions()[-1] == ("login.locked", "ana")


def test_the_lock_is_per_username_and_address(client, ana, django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    for _ in range(security.LOCKOUT_ATTEMPTS):
        sign_in(client, password="nope-nope-nope")
    assert sign_in(client, ip="10.9.9.9").status_code == 302  # same user, another address
    client.logout()
    assert sign_in(client, username="bob").status_code == 302  # same address, another user


def test_the_lock_lifts_after_the_window(client, ana):
    for _ in range(security.LOCKOUT_ATTEMPTS):
        sign_in(client, password="nope-nope-nope")
    assert security.locked_until("ana", "10.1.1.1") is not None
    later = timezone.now() + security.LOCKOUT_WINDOW + timedelta(seconds=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(timezone, "now", lambda: later)
        assert security.locked_until("ana", "10.1.1.1") is None


def test_attempts_while_locked_do_not_extend_the_lock(client, ana):
    for _ in range(security.LOCKOUT_ATTEMPTS):
        sign_in(client, password="nope-nope-nope")
    until = security.locked_until("ana", "10.1.1.1")
    for _ in range(3):
        sign_in(client, password="nope-nope-nope")
    assert security.locked_until("ana", "10.1.1.1") == until


def test_a_success_starts_the_count_afresh(client, ana):
    for _ in range(security.LOCKOUT_ATTEMPTS - 1):
        sign_in(client, password="nope-nope-nope")
    assert sign_in(client).status_code == 302
    client.logout()
    for _ in range(security.LOCKOUT_ATTEMPTS - 1):
        sign_in(client, password="nope-nope-nope")
    assert sign_in(client).status_code == 302


def test_the_lock_holds_for_every_way_in(client, ana, rf):
    for _ in range(security.LOCKOUT_ATTEMPTS):
        sign_in(client, password="nope-nope-nope")
    request = rf.post("/anything/", REMOTE_ADDR="10.1.1.1")
    assert authenticate(request, username="ana", password=PASSWORD) is None


# --- sessions


@override_settings(SESSION_IDLE_TIMEOUT=60)
def test_an_idle_session_is_signed_out(client, ana):
    sign_in(client)
    assert client.get("/messages/").status_code == 200
    session = client.session
    session[security.LAST_SEEN] = int(time.time()) - 61
    session.save()
    response = client.get("/messages/")
    assert response.status_code == 302 and response.url.startswith("/login/")
    assert client.get("/messages/").url.startswith("/login/")
    assert actions()[-1] == ("logout", "ana")
    assert AuditEvent.objects.get(action="logout").detail == {"reason": "idle"}


@override_settings(SESSION_IDLE_TIMEOUT=60)
def test_htmx_after_idle_reloads_the_sign_in_page_whole(client, ana):
    sign_in(client)
    session = client.session
    session[security.LAST_SEEN] = int(time.time()) - 61
    session.save()
    response = client.get("/messages/", HTTP_HX_REQUEST="true")
    assert response.headers["HX-Redirect"] == "/login/"


@override_settings(SESSION_IDLE_TIMEOUT=120)
def test_background_refreshes_do_not_keep_a_session_alive(client, ana):
    sign_in(client)
    session = client.session
    session[security.LAST_SEEN] = stale = int(time.time()) - 100
    session.save()
    assert client.get("/messages/", HTTP_HX_REQUEST="true").status_code == 200
    assert client.session[security.LAST_SEEN] == stale
    assert client.get("/messages/").status_code == 200  # a page load is use
    assert client.session[security.LAST_SEEN] > stale


def test_session_settings():
    from django.conf import settings

    assert settings.SESSION_COOKIE_HTTPONLY and settings.SESSION_COOKIE_AGE > 0
    assert settings.SESSION_IDLE_TIMEOUT == 30 * 60
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is False  # an option: env var


@override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True)
def test_expire_at_browser_close_sets_a_session_cookie(client, ana):
    sign_in(client)
    cookie = client.cookies["sessionid"]
    assert not cookie["expires"] and not cookie["max-age"]


# --- headers


def test_security_headers_on_every_response(client, ana):
    responses = [client.get("/login/"), client.get("/messages/")]  # public, and a redirect
    sign_in(client)
    responses += [client.get("/messages/"), client.get("/static/console/console.css")]
    for response in responses:
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "'unsafe-eval'" not in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self' " not in csp  # nothing beside self for scripts
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert "Strict-Transport-Security" not in response.headers  # no TLS here


def test_pages_carry_no_inline_script(client, ana):
    sign_in(client)
    for url in ("/login/", "/messages/", "/channels/"):
        html = client.get(url).content.decode()
        for tag in html.split("<script")[1:]:
            assert tag.split(">", 1)[0].strip().startswith("src="), f"inline script on {url}"
        assert " on" + "click=" not in html and "javascript:" not in html


@override_settings(SECURE_HSTS_SECONDS=31536000)
def test_hsts_on_https_responses_when_tls_is_on(client):
    response = client.get("/login/", secure=True)
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/login/").headers


@pytest.mark.parametrize(("secure", "expected"), [("1", "31536000"), ("0", "0")])
def test_hsts_follows_secure_cookies_setting(secure, expected):
    env = {**os.environ, "SECURE_COOKIES": secure, "DJANGO_SETTINGS_MODULE": "console.settings"}
    env.pop("SECURE_HSTS_SECONDS", None)
    code = "from django.conf import settings; print(settings.SECURE_HSTS_SECONDS)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected


# --- an admin lifts a lock


def lock_ana(client):
    for _ in range(security.LOCKOUT_ATTEMPTS):
        sign_in(client, password="nope-nope-nope")


def test_an_admin_unlocks_from_the_audit_page(client, ana, django_user_model):
    lock_ana(client)
    sign_in(client)  # refused: written as login.locked
    chief = django_user_model.objects.create_user("chief", password=PASSWORD)
    set_role(chief, Role.ADMIN)
    admin = type(client)()
    admin.force_login(chief)
    html = admin.get("/audit/", {"action": "login.locked"}).content.decode()
    assert "Unlock" in html  # offered on the row that records the refusal
    response = admin.post("/audit/unlock/", {"username": "ana", "ip": "10.1.1.1"})
    assert response.status_code == 302 and response.url == "/audit/?target=ana"
    unlock = AuditEvent.objects.get(action="login.unlocked")
    assert (unlock.actor, unlock.target, unlock.detail) == (chief, "ana", {"ip": "10.1.1.1"})
    assert security.locked_until("ana", "10.1.1.1") is None
    assert sign_in(client).status_code == 302


def test_an_unlock_is_for_one_address(client, ana):
    lock_ana(client)
    security.unlock(None, "ana", "10.7.7.7")
    assert security.locked_until("ana", "10.1.1.1") is not None


def test_only_admins_unlock(client, ana, django_user_model):
    lock_ana(client)
    operator = django_user_model.objects.create_user("op", password=PASSWORD)
    set_role(operator, Role.OPERATOR)
    other = type(client)()
    other.force_login(operator)
    assert other.post("/audit/unlock/", {"username": "ana", "ip": "10.1.1.1"}).status_code == 403
    assert security.locked_until("ana", "10.1.1.1") is not None
