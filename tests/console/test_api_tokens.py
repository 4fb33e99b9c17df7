"""Service tokens: hashed at rest, shown once, expiring, rotatable with overlap, revocable,
role-bound, last use recorded; from the shell and from the API, every step audited."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from console import tokens
from console.models import ApiToken, AuditEvent
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def issue_from_shell(*args) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_token", *args, stdout=out, stderr=err)
    assert "shown once" in err.getvalue()
    return out.getvalue().strip()


def test_shell_issues_a_token_once_and_stores_only_its_digest():
    secret = issue_from_shell("lab-feed", "--role", "viewer", "--expires", "90d")
    assert tokens.TOKEN_RE.match(secret)
    token = ApiToken.objects.get()
    assert token.account.username == "lab-feed" and token.role == "viewer"
    assert not token.account.has_usable_password()  # a service account cannot sign in
    assert abs(token.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM console_apitoken")
        stored = repr(cursor.fetchall())
    assert secret not in stored and secret.split("_", 2)[2] not in stored  # the secret part
    event = AuditEvent.objects.get(action="token.issued")
    assert event.target == f"token:{token.prefix}" and secret not in repr(event.detail)


def test_a_token_signs_in_with_its_role_and_records_last_use():
    secret = issue_from_shell("lab-feed", "--role", "viewer")
    client = bearer(secret)
    assert client.get("/api/v1/messages/").status_code == 200
    assert client.get("/api/v1/audit/").status_code == 403  # admin only
    assert ApiToken.objects.get().last_used_at is not None


def test_unknown_tampered_expired_and_revoked_tokens_get_401():
    secret = issue_from_shell("lab-feed", "--role", "admin")
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert bearer(tampered).get("/api/v1/messages/").status_code == 401
    assert bearer("hub_nonsense").get("/api/v1/messages/").status_code == 401
    token = ApiToken.objects.get()
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(secret).get("/api/v1/messages/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(days=1))
    assert bearer(secret).get("/api/v1/messages/").status_code == 200
    call_command("issue_token", "lab-feed", "--revoke", stdout=io.StringIO())
    assert bearer(secret).get("/api/v1/messages/").status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked").count() == 1


def test_rotation_overlaps_then_the_old_token_stops():
    old = issue_from_shell("lab-feed", "--role", "operator", "--expires", "30d")
    new = issue_from_shell("lab-feed", "--rotate", "--overlap", "1h")
    assert new != old
    assert bearer(old).get("/api/v1/messages/").status_code == 200  # still inside the overlap
    assert bearer(new).get("/api/v1/messages/").status_code == 200
    first, second = ApiToken.objects.order_by("created_at")
    assert first.replaced_by_id == second.pk and second.role == "operator"
    assert first.expires_at <= timezone.now() + timedelta(hours=1)
    ApiToken.objects.filter(pk=first.pk).update(expires_at=timezone.now())
    assert bearer(old).get("/api/v1/messages/").status_code == 401
    assert bearer(new).get("/api/v1/messages/").status_code == 200
    assert AuditEvent.objects.get(action="token.rotated").detail["replaces"] == first.prefix


def test_a_token_has_its_role_even_for_a_superuser_account(django_user_model):
    root = django_user_model.objects.create_superuser("root", password="x" * 16)
    issued = tokens.issue(root, Role.VIEWER, lifetime=timedelta(days=1))
    assert bearer(issued.secret).get("/api/v1/audit/").status_code == 403


def test_shell_refuses_bad_input():
    with pytest.raises(CommandError, match="--role is required"):
        call_command("issue_token", "x", stdout=io.StringIO())
    with pytest.raises(CommandError, match="not a duration"):
        call_command("issue_token", "x", "--role", "viewer", "--expires", "soon")
    factories.user("ana", Role.ADMIN)
    with pytest.raises(CommandError, match="person's account"):
        call_command("issue_token", "ana", "--role", "viewer")
    with pytest.raises(CommandError, match="no valid token"):
        call_command("issue_token", "nobody", "--rotate")


def test_api_issues_lists_rotates_and_revokes_for_admins(hub_admin_user):
    client = Client()
    client.force_login(hub_admin_user)
    response = client.post(
        "/api/v1/tokens/",
        {"account": "ris-feed", "role": "operator", "expires_in_days": 30},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    issued = response.json()
    secret = issued["token"]
    assert issued["state"] == "active" and issued["role"] == "operator"
    listed = client.get("/api/v1/tokens/").json()["results"]
    assert [t["prefix"] for t in listed] == [issued["prefix"]]
    assert "token" not in listed[0] and secret not in client.get("/api/v1/tokens/").content.decode()
    rotated = client.post(
        f"/api/v1/tokens/{issued['id']}/rotate/",
        {"overlap_hours": 0},
        content_type="application/json",
    )
    assert rotated.status_code == 201
    assert bearer(secret).get("/api/v1/messages/").status_code == 401  # no overlap asked
    new_secret = rotated.json()["token"]
    assert bearer(new_secret).get("/api/v1/messages/").status_code == 200
    revoked = client.post(f"/api/v1/tokens/{rotated.json()['id']}/revoke/")
    assert revoked.json()["state"] == "revoked"
    assert bearer(new_secret).get("/api/v1/messages/").status_code == 401
    tokens_audit = AuditEvent.objects.filter(action__startswith="token.").order_by("id")
    actions = list(tokens_audit.values_list("action", "actor_name"))
    assert actions == [
        ("token.issued", "hubadmin"),
        ("token.rotated", "hubadmin"),
        ("token.revoked", "hubadmin"),
    ]


def test_api_refuses_tokens_for_a_persons_account(hub_admin_user):
    client = Client()
    client.force_login(hub_admin_user)
    response = client.post(
        "/api/v1/tokens/",
        {"account": "hubadmin", "role": "viewer"},
        content_type="application/json",
    )
    assert response.status_code == 400 and "person's account" in response.content.decode()
