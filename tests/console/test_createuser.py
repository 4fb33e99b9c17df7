"""`manage.py createuser NAME --role ROLE`: creates or updates, validates, never echoes secrets."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from console.roles import Role, user_role

pytestmark = pytest.mark.django_db

GOOD = "tulip-orbit-ledger-91"


def run(*args) -> str:
    out = StringIO()
    call_command("createuser", *args, stdout=out)
    return out.getvalue()


def fresh(username: str):
    return get_user_model().objects.get(username=username)


def test_creates_a_user_with_a_role_from_an_env_password(monkeypatch):
    monkeypatch.setenv("NEW_PW", GOOD)
    out = run("ana", "--role", "operator", "--password-env", "NEW_PW")
    user = fresh("ana")
    assert user_role(user) == Role.OPERATOR and user.check_password(GOOD)
    assert "created user 'ana' with role operator" in out and GOOD not in out


def test_prompts_for_the_password_when_no_env_var(monkeypatch):
    answers = iter([GOOD, GOOD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    run("bo", "--role", "viewer")
    assert fresh("bo").check_password(GOOD)


def test_prompted_passwords_must_match(monkeypatch):
    answers = iter([GOOD, GOOD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError, match="do not match"):
        run("bo", "--role", "viewer")
    assert not get_user_model().objects.filter(username="bo").exists()


@pytest.mark.parametrize(
    ("username", "weak"),
    [
        ("carol", "tiny1"),  # too short
        ("carol", "password12345"),  # common
        ("carol", "123456789012"),  # numeric
        ("margaretha", "margaretha!!"),  # too close to the username
    ],
)
def test_password_validators_refuse_weak_passwords(monkeypatch, username, weak):
    monkeypatch.setenv("NEW_PW", weak)
    with pytest.raises(CommandError, match="password refused") as err:
        run(username, "--role", "admin", "--password-env", "NEW_PW")
    assert weak not in str(err.value)
    assert not get_user_model().objects.filter(username=username).exists()


def test_updates_the_role_of_an_existing_user_and_keeps_the_password(monkeypatch):
    monkeypatch.setenv("NEW_PW", GOOD)
    run("dee", "--role", "viewer", "--password-env", "NEW_PW")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": pytest.fail("must not prompt"))
    out = run("dee", "--role", "analyst")
    user = fresh("dee")
    assert user_role(user) == Role.ANALYST and user.check_password(GOOD)
    assert "updated user 'dee': role viewer -> analyst" in out
    assert list(user.groups.values_list("name", flat=True)) == ["analyst"]


def test_updating_with_an_env_password_changes_it(monkeypatch):
    monkeypatch.setenv("NEW_PW", GOOD)
    run("eve", "--role", "viewer", "--password-env", "NEW_PW")
    monkeypatch.setenv("NEW_PW", GOOD + "-2")
    out = run("eve", "--role", "viewer", "--password-env", "NEW_PW")
    assert fresh("eve").check_password(GOOD + "-2") and "password changed" in out


def test_unknown_role_and_missing_env_var_are_refused(monkeypatch):
    with pytest.raises(CommandError):
        run("fay", "--role", "root", "--password-env", "NEW_PW")
    monkeypatch.delenv("NO_SUCH_PW", raising=False)
    with pytest.raises(CommandError, match="NO_SUCH_PW is not set"):
        run("fay", "--role", "viewer", "--password-env", "NO_SUCH_PW")


def test_seed_demo_gives_the_demo_admin_the_admin_role(tmp_path, monkeypatch, settings):
    settings.HUB = {**settings.HUB, "OUTBOX_DIR": str(tmp_path)}
    monkeypatch.delenv("DEMO_FHIR_URL", raising=False)
    call_command("seed_demo", stdout=StringIO())
    admin = fresh("admin")
    assert user_role(admin) == Role.ADMIN
    assert admin.groups.filter(name="admin").exists()


def test_can_edit_resend_grants_and_takes_back_the_permission(monkeypatch):
    from console.roles import RESEND_EDITED, has_permission

    monkeypatch.setenv("NEW_PW", GOOD)
    out = run("gil", "--role", "operator", "--password-env", "NEW_PW", "--can-edit-resend")
    assert has_permission(fresh("gil"), RESEND_EDITED) and "may edit and resend" in out
    out = run("gil", "--role", "operator", "--no-can-edit-resend")
    assert not has_permission(fresh("gil"), RESEND_EDITED) and "may not edit and resend" in out
    run("ivy", "--role", "operator", "--password-env", "NEW_PW")
    assert not has_permission(fresh("ivy"), RESEND_EDITED)  # no role implies it


def test_can_edit_resend_is_refused_below_operator(monkeypatch):
    monkeypatch.setenv("NEW_PW", GOOD)
    with pytest.raises(CommandError, match="needs the operator role"):
        run("hal", "--role", "viewer", "--password-env", "NEW_PW", "--can-edit-resend")
    assert not get_user_model().objects.filter(username="hal").exists()


def test_creating_and_changing_a_user_is_audited_without_the_password(monkeypatch):
    from console.models import AuditEvent

    monkeypatch.setenv("NEW_PW", GOOD)
    run("joy", "--role", "viewer", "--password-env", "NEW_PW")
    run("joy", "--role", "operator", "--can-edit-resend")
    created, updated = AuditEvent.objects.filter(target="user:joy").order_by("id")
    assert created.action == "user.created" and created.detail["role"] == [None, "viewer"]
    assert created.actor_name == "shell:createuser"
    assert updated.action == "user.updated" and updated.detail["role"] == ["viewer", "operator"]
    assert updated.detail["channels_app.resend_edited"] == "granted"
    assert updated.detail["password_changed"] is False
    assert GOOD not in str(created.detail) + str(updated.detail)
