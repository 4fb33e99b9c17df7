"""The app's database role cannot undo the audit log: it is neither superuser nor the audit
table's owner, so the bypasses a superuser has (session_replication_role, DISABLE TRIGGER,
DROP TRIGGER) are refused, as are UPDATE, DELETE and TRUNCATE, while the app's work still runs.

The suite connects as a superuser (CI's ``postgres``); this test makes a restricted role of its
own, gives it exactly what ``migrate`` gives the app role (console/db_roles.py) and connects as it.
"""

from __future__ import annotations

import os

import psycopg
import pytest
from django.db import connection

from console import audit
from console.db_roles import connected_role, grant_app_role
from console.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

BYPASSES = [
    "SET LOCAL session_replication_role = replica",
    "ALTER TABLE console_auditevent DISABLE TRIGGER ALL",
    "ALTER TABLE console_auditevent DISABLE TRIGGER console_audit_no_change",
    "DROP TRIGGER console_audit_no_change ON console_auditevent",
    "DROP FUNCTION console_audit_append_only() CASCADE",
    "ALTER TABLE console_auditevent OWNER TO CURRENT_USER",
]
REFUSED_ROWS = [
    "UPDATE console_auditevent SET action = 'nothing.happened'",
    "DELETE FROM console_auditevent",
    "TRUNCATE console_auditevent",
]


@pytest.fixture
def app_role():
    """A login role with only the app's grants on the test database; dropped afterwards."""
    name, password = f"hub_app_probe_{os.getpid()}", "probe-password-1"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {name}")
        cursor.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER PASSWORD '{password}'")
        grant_app_role(cursor, name)
    yield name, password
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {name}")
        cursor.execute(f"DROP ROLE {name}")


@pytest.fixture
def as_app(app_role):
    """A connection to the test database as the restricted role."""
    name, password = app_role
    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        dbname=params["NAME"],
        user=name,
        password=password,
    ) as conn:
        yield conn


@pytest.fixture
def event():
    audit.record(None, "phi.reveal", target="message:42", detail={"field": "PID-5"})
    return AuditEvent.objects.get()


@pytest.mark.parametrize("statement", BYPASSES + REFUSED_ROWS)
def test_the_app_role_is_refused(as_app, event, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app.execute(statement)
    as_app.rollback()
    assert as_app.execute("SELECT count(*) FROM console_auditevent").fetchone() == (1,)
    # The protection is still there for the next statement.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app.execute("DELETE FROM console_auditevent")
    as_app.rollback()
    assert AuditEvent.objects.get().action == "phi.reveal"


def test_the_app_role_adds_and_reads_audit_entries(as_app, event):
    as_app.execute(
        "INSERT INTO console_auditevent (at, actor_name, user_agent, action, target, detail)"
        " VALUES (now(), 'ana', '', 'config.change', 'channel:1', '{}')"
    )
    as_app.commit()
    assert sorted(AuditEvent.objects.values_list("action", flat=True)) == [
        "config.change",
        "phi.reveal",
    ]


def test_deleting_a_user_still_unlinks_their_entries(as_app, django_user_model):
    """The one UPDATE the app needs: actor_id to NULL when a user goes (the trigger checks it)."""
    ana = django_user_model.objects.create_user("ana")
    AuditEvent.objects.create(actor=ana, actor_name="ana", action="login")
    as_app.execute("UPDATE console_auditevent SET actor_id = NULL WHERE actor_id = %s", [ana.pk])
    as_app.commit()
    assert AuditEvent.objects.get().actor_id is None
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app.execute("UPDATE console_auditevent SET actor_name = 'someone'")


def test_the_app_role_keeps_its_rows_elsewhere(as_app, app_role):
    name, _ = app_role
    tables = [
        "channels_app_message",
        "channels_app_delivery",
        "channels_app_destination",
        "auth_user",
    ]
    for table in tables:
        granted = as_app.execute(
            "SELECT has_table_privilege(%s, %s, 'SELECT, INSERT, UPDATE, DELETE')", [name, table]
        ).fetchone()
        assert granted == (True,), table
    assert as_app.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = %s", [name]
    ).fetchone() == (False,)


def test_the_suite_itself_connects_as_a_role_that_could(db):
    """What the System page reports for CI's superuser connection."""
    role = connected_role(connection)
    assert role.superuser and role.can_undo_audit
