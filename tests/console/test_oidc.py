"""Single sign-on against a real (local) OpenID Connect provider: the authorization code flow with
PKCE, an RS256 ID token checked against the provider's JWKS, userinfo claims mapped to a role.

The provider is a small HTTP server started here (token, userinfo and JWKS endpoints; RSA keys
generated at test time). The browser's hop to the provider's login page is the one step played
by the test: it reads state and nonce from the redirect and calls the callback with a code, as
the provider would after the user signed in there.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from console.models import AuditEvent
from console.oidc_roles import parse_role_map, role_from_claims
from console.roles import Role, user_role
from tests.support import free_port

CLIENT_ID = "hub-console"
CLIENT_SECRET = "oidc-client-secret-6610"


def b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Provider:
    """Token, userinfo and JWKS endpoints of an OpenID provider, signing with its own RSA key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_key = self.key  # a test swaps this for a stranger's key
        self.claims: dict = {}
        self.nonce = ""
        self.audience = CLIENT_ID
        self.token_requests: list[dict] = []

    def id_token(self) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": self.claims.get("sub", "sub-1"),
            "aud": self.audience,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce,
        }
        return jwt.encode(payload, self.signing_key, algorithm="RS256", headers={"kid": "k1"})

    def jwks(self) -> dict:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "k1",
                    "use": "sig",
                    "alg": "RS256",
                    "n": b64(numbers.n),
                    "e": b64(numbers.e),
                }
            ]
        }

    def start(self) -> Provider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                provider.token_requests.append(form)
                if self.path != "/token" or form.get("client_secret") != CLIENT_SECRET:
                    return self.reply(401, {"error": "invalid_client"})
                if form.get("code") != "code-1" or not form.get("code_verifier"):
                    return self.reply(400, {"error": "invalid_grant"})
                self.reply(
                    200,
                    {
                        "access_token": "access-1",
                        "token_type": "Bearer",
                        "id_token": provider.id_token(),
                    },
                )

            def do_GET(self):
                if self.path == "/jwks":
                    return self.reply(200, provider.jwks())
                if self.path == "/userinfo":
                    if self.headers.get("Authorization") != "Bearer access-1":
                        return self.reply(401, {"error": "invalid_token"})
                    return self.reply(200, provider.claims)
                self.reply(404, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider(settings):
    p = Provider().start()
    settings.OIDC_ENABLED = True
    settings.ROOT_URLCONF = "tests.console.oidc_urls"  # routes exist only where SSO is configured
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{p.issuer}/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{p.issuer}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{p.issuer}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{p.issuer}/jwks"
    settings.OIDC_OP_ISSUER = p.issuer
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_ROLE_CLAIM = "groups"
    settings.OIDC_ROLE_MAP = parse_role_map("hub-admins:admin, hub-ops:operator, hub-see:viewer")
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "console.oidc.RoleMappingBackend",
    ]
    yield p
    p.stop()


def sign_in_with_sso(client, provider, claims: dict, next_url: str = "/messages/"):
    """The whole round trip; returns the callback's response."""
    start = client.get("/oidc/authenticate/", {"next": next_url})
    assert start.status_code == 302 and start.url.startswith(provider.issuer + "/authorize")
    query = {k: v[0] for k, v in parse_qs(urlparse(start.url).query).items()}
    assert query["client_id"] == CLIENT_ID and query["code_challenge_method"] == "S256"
    provider.claims, provider.nonce = claims, query["nonce"]
    return client.get("/oidc/callback/", {"code": "code-1", "state": query["state"]})


# --- the round trip, database and provider real -------------------------------------------------

pytestmark_db = pytest.mark.django_db  # the pure tests below need none


@pytestmark_db
def test_a_mapped_group_signs_in_with_its_role_and_is_audited(client, provider):
    claims = {"sub": "s-olga", "preferred_username": "olga", "groups": ["hub-ops", "staff"]}
    response = sign_in_with_sso(client, provider, claims)
    assert response.status_code == 302 and response.url == "/messages/"
    assert client.get("/messages/").status_code == 200
    from django.contrib.auth import get_user_model

    olga = get_user_model().objects.get(username="olga")
    assert user_role(olga) == Role.OPERATOR and not olga.has_usable_password()
    event = AuditEvent.objects.get(action="login.success")
    assert event.target == "olga" and event.detail == {"method": "oidc", "role": "operator"}
    # The client secret went to the token endpoint, never anywhere a page shows.
    assert provider.token_requests[0]["client_secret"] == CLIENT_SECRET


@pytestmark_db
def test_the_highest_mapped_role_wins(client, provider):
    sign_in_with_sso(client, provider, {"sub": "s-ada", "groups": ["hub-see", "/hub-admins"]})
    from django.contrib.auth import get_user_model

    assert user_role(get_user_model().objects.get(username="s-ada")) == Role.ADMIN


@pytestmark_db
def test_no_mapped_group_signs_in_without_a_role_and_is_denied(client, provider):
    response = sign_in_with_sso(
        client, provider, {"sub": "s-x", "preferred_username": "xavier", "groups": ["other"]}
    )
    assert response.status_code == 302
    assert client.get("/messages/").status_code == 403


@pytestmark_db
def test_a_role_taken_away_at_the_provider_is_gone_at_the_next_sign_in(client, provider):
    claims = {"sub": "s-b", "preferred_username": "bea", "groups": ["hub-admins"]}
    sign_in_with_sso(client, provider, claims)
    assert client.get("/audit/").status_code == 200
    client.post("/logout/")
    sign_in_with_sso(client, provider, {**claims, "groups": ["hub-see"]})
    assert client.get("/audit/").status_code == 403 and client.get("/messages/").status_code == 200


@pytestmark_db
def test_a_local_account_is_never_taken_over(client, provider, django_user_model):
    django_user_model.objects.create_user("admin", password="a-long-local-password")
    response = sign_in_with_sso(
        client, provider, {"sub": "s-evil", "preferred_username": "admin", "groups": ["hub-admins"]}
    )
    assert response.status_code == 302 and response.url == "/login/?sso=failed"
    assert client.get("/messages/").status_code == 302  # still signed out
    page = client.get(response.url).content.decode()
    assert "Single sign-on did not sign you in" in page


@pytestmark_db
def test_a_token_signed_by_another_key_is_refused(client, provider):
    provider.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = sign_in_with_sso(client, provider, {"sub": "s-m", "groups": ["hub-admins"]})
    assert response.status_code == 400  # SuspiciousOperation
    assert client.get("/messages/").status_code == 302


@pytestmark_db
def test_a_token_for_another_client_is_refused(client, provider):
    provider.audience = "some-other-app"
    response = sign_in_with_sso(client, provider, {"sub": "s-m", "groups": ["hub-admins"]})
    assert response.status_code == 400
    assert client.get("/messages/").status_code == 302


@pytestmark_db
def test_the_sign_in_page_offers_sso_only_when_configured(client, settings, provider):
    assert "Sign in with SSO" in client.get("/login/").content.decode()
    settings.OIDC_ENABLED = False
    assert "Sign in with SSO" not in client.get("/login/").content.decode()
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/").status_code == 404


# --- claims to roles, pure -------------------------------------------------------------------


def test_role_map_parsing():
    assert parse_role_map("") == {}
    assert parse_role_map("hub-admins:admin,hub-ops:operator") == {
        "hub-admins": Role.ADMIN,
        "hub-ops": Role.OPERATOR,
    }
    with pytest.raises(ValueError):
        parse_role_map("hub-admins")
    with pytest.raises(ValueError):
        parse_role_map("hub-admins:superuser")


def test_role_from_claims_accepts_lists_and_strings():
    role_map = parse_role_map("a:viewer,b:analyst")
    assert role_from_claims({"groups": ["a", "b"]}, "groups", role_map) == Role.ANALYST
    assert role_from_claims({"groups": "a b"}, "groups", role_map) == Role.ANALYST
    assert role_from_claims({"groups": "a"}, "groups", role_map) == Role.VIEWER
    assert role_from_claims({"roles": ["b"]}, "roles", role_map) == Role.ANALYST
    assert role_from_claims({}, "groups", role_map) is None


# --- settings from the environment ------------------------------------------------------------

SETTINGS = Path(__file__).resolve().parents[2] / "console" / "settings.py"
OIDC_ENV = {
    "OIDC_RP_CLIENT_ID": CLIENT_ID,
    "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://idp.example/authorize",
    "OIDC_OP_TOKEN_ENDPOINT": "https://idp.example/token",
    "OIDC_OP_USER_ENDPOINT": "https://idp.example/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": "https://idp.example/jwks",
    "OIDC_ROLE_MAP": "hub-admins:admin,hub-ops:operator",
}


def load_settings(monkeypatch, env: dict) -> dict:
    import runpy

    for name in OIDC_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_sso_is_off_without_a_client_id(monkeypatch):
    loaded = load_settings(monkeypatch, {})
    assert not loaded["OIDC_ENABLED"]
    assert "console.oidc.RoleMappingBackend" not in loaded["AUTHENTICATION_BACKENDS"]


def test_sso_settings_from_the_environment(monkeypatch):
    loaded = load_settings(monkeypatch, OIDC_ENV)
    assert loaded["OIDC_ENABLED"] and loaded["OIDC_ROLE_CLAIM"] == "groups"
    assert loaded["AUTHENTICATION_BACKENDS"][-1] == "console.oidc.RoleMappingBackend"
    assert loaded["OIDC_ROLE_MAP"] == {"hub-admins": Role.ADMIN, "hub-ops": Role.OPERATOR}


def test_a_half_configured_provider_fails_at_startup(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    env = {k: v for k, v in OIDC_ENV.items() if k != "OIDC_OP_JWKS_ENDPOINT"}
    with pytest.raises(ImproperlyConfigured, match="OIDC_OP_JWKS_ENDPOINT"):
        load_settings(monkeypatch, env)
    with pytest.raises(ImproperlyConfigured, match="OIDC_ROLE_MAP"):
        load_settings(monkeypatch, {**OIDC_ENV, "OIDC_ROLE_MAP": "hub-admins:root"})
