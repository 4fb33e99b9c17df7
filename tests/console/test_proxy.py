"""Behind a reverse proxy: X-Forwarded-For and X-Forwarded-Proto count only when the direct peer is
a trusted proxy (HUB_TRUSTED_PROXIES); the client address for audit and lockout comes from one
function; HSTS goes out on secure requests only."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from console import audit
from console.models import AuditEvent

SETTINGS = Path(__file__).resolve().parents[2] / "console" / "settings.py"
PROXY = "10.0.0.5"
CLIENT = "203.0.113.9"
STRANGER = "198.51.100.7"


@pytest.fixture
def behind_proxy(settings):
    settings.HUB_TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::/8"]
    return settings


def ip_of(**meta) -> str | None:
    return audit.client_ip(RequestFactory().get("/", **meta))


# --- the one function ---------------------------------------------------------------------------


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.HUB_TRUSTED_PROXIES = []
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT) == PROXY


def test_a_trusted_peer_s_header_names_the_client(behind_proxy):
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT) == CLIENT
    assert ip_of(REMOTE_ADDR="fd00::1", HTTP_X_FORWARDED_FOR=CLIENT) == CLIENT


def test_an_untrusted_peer_s_header_is_ignored(behind_proxy):
    assert ip_of(REMOTE_ADDR=STRANGER, HTTP_X_FORWARDED_FOR=CLIENT) == STRANGER


def test_what_the_client_wrote_in_front_is_not_believed(behind_proxy):
    # The client sent "X-Forwarded-For: 1.1.1.1"; two proxies appended what they saw.
    forwarded = f"1.1.1.1, {CLIENT}, 10.0.0.9"
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded) == CLIENT


def test_garbage_in_the_header_stops_at_the_last_proxy(behind_proxy):
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="not-an-ip") == PROXY
    assert ip_of(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="evil, 10.0.0.9") == "10.0.0.9"


# --- audit and lockout use it -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_sign_in_through_the_proxy_is_audited_with_the_client_address(
    behind_proxy, client
):
    client.post(
        "/login/",
        {"username": "nobody", "password": "wrong-password-1"},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=CLIENT,
    )
    client.post(
        "/login/",
        {"username": "nobody", "password": "wrong-password-2"},
        REMOTE_ADDR=STRANGER,
        HTTP_X_FORWARDED_FOR=CLIENT,
    )
    ips = list(AuditEvent.objects.filter(action="login.failed").order_by("id").values_list("ip"))
    assert ips == [(CLIENT,), (STRANGER,)]


@pytest.mark.django_db
def test_lockout_counts_per_client_behind_the_proxy(behind_proxy, client, django_user_model):
    django_user_model.objects.create_user("ana", password="a-long-password-123")
    for _ in range(5):
        client.post(
            "/login/",
            {"username": "ana", "password": "wrong"},
            REMOTE_ADDR=PROXY,
            HTTP_X_FORWARDED_FOR=CLIENT,
        )
    locked = client.post(
        "/login/",
        {"username": "ana", "password": "a-long-password-123"},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=CLIENT,
    )
    assert locked.status_code == 200 and "locked" in locked.content.decode()
    other = client.post(
        "/login/",
        {"username": "ana", "password": "a-long-password-123"},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="203.0.113.77",
    )
    assert other.status_code == 302  # the same proxy, another client: not locked


# --- TLS at the proxy: is_secure() and HSTS ---------------------------------------------------


@pytest.fixture
def tls_proxy(behind_proxy):
    behind_proxy.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    behind_proxy.SECURE_HSTS_SECONDS = 31536000
    return behind_proxy


@pytest.mark.django_db
def test_hsts_only_on_requests_a_trusted_proxy_says_are_https(tls_proxy, client):
    https = client.get("/login/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    assert https.headers["Strict-Transport-Security"] == "max-age=31536000"
    plain = client.get("/login/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="http")
    assert "Strict-Transport-Security" not in plain.headers
    spoofed = client.get("/login/", REMOTE_ADDR=STRANGER, HTTP_X_FORWARDED_PROTO="https")
    assert "Strict-Transport-Security" not in spoofed.headers


# --- settings from the environment ------------------------------------------------------------


def load_settings(monkeypatch, **env) -> dict:
    for name in ("HUB_TRUSTED_PROXIES", "HUB_BEHIND_TLS_PROXY", "SECURE_COOKIES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_settings_behind_a_tls_proxy(monkeypatch):
    loaded = load_settings(
        monkeypatch, HUB_TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.1", HUB_BEHIND_TLS_PROXY="1"
    )
    assert loaded["HUB_TRUSTED_PROXIES"] == ["10.0.0.0/8", "192.0.2.1"]
    assert loaded["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert loaded["SESSION_COOKIE_SECURE"] and loaded["SECURE_HSTS_SECONDS"] > 0


def test_settings_without_a_proxy(monkeypatch):
    loaded = load_settings(monkeypatch)
    assert loaded["HUB_TRUSTED_PROXIES"] == [] and "SECURE_PROXY_SSL_HEADER" not in loaded
    assert not loaded["SESSION_COOKIE_SECURE"]


def test_a_bad_proxy_address_fails_at_startup(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="HUB_TRUSTED_PROXIES"):
        load_settings(monkeypatch, HUB_TRUSTED_PROXIES="10.0.0.0/8,proxy.local")
