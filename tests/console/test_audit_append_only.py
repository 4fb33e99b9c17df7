"""The audit log is append-only in the database itself: raw SQL cannot change or remove a row."""

from __future__ import annotations

import importlib
import os

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import RequestFactory

from console import audit
from console.models import AuditEvent

pytestmark = pytest.mark.django_db

INITIAL = importlib.import_module("console.migrations.0001_initial")


@pytest.fixture
def event(django_user_model):
    ana = django_user_model.objects.create_user("ana")
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.7", HTTP_USER_AGENT="pytest-agent")
    request.user = ana
    audit.record(request, "phi.reveal", target="message:42", detail={"field": "PID-5"})
    return AuditEvent.objects.get()


def raw(sql: str, params=()) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_record_keeps_who_when_where_what(event):
    assert event.actor.username == "ana" and event.actor_name == "ana"
    assert event.ip == "10.0.0.7" and event.user_agent == "pytest-agent"
    assert (event.action, event.target, event.detail) == (
        "phi.reveal",
        "message:42",
        {"field": "PID-5"},
    )
    assert event.at is not None


def test_record_without_request_or_user():
    audit.record(None, "system.prune", target="channel:3", detail={"bodies": 10})
    event = AuditEvent.objects.get()
    assert event.actor is None and event.actor_name == "" and event.ip is None


def test_raw_update_is_refused(event):
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE console_auditevent SET action = 'nothing.happened' WHERE id = %s", [event.id])
    event.refresh_from_db()
    assert event.action == "phi.reveal"


def test_raw_update_of_actor_name_is_refused(event):
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE console_auditevent SET actor_name = 'someone' WHERE id = %s", [event.id])


def test_raw_delete_is_refused(event):
    with pytest.raises(DatabaseError, match="append-only"):
        raw("DELETE FROM console_auditevent WHERE id = %s", [event.id])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_orm_update_and_delete_are_refused(event):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(target="x")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.delete()


@pytest.fixture
def production_like_database():
    """A scratch database not named test_*, holding an audit table with the migration's trigger."""
    import psycopg

    params = connection.settings_dict
    conninfo = {
        "host": params["HOST"] or None,
        "port": params["PORT"] or None,
        "user": params["USER"] or None,
        "password": params["PASSWORD"] or None,
    }
    name = f"hub_audit_probe_{os.getpid()}"
    with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(dbname=name, autocommit=True, **conninfo) as probe:
            probe.execute(
                "CREATE TABLE console_auditevent (id bigserial PRIMARY KEY, actor_id bigint,"
                " action text)"
            )
            probe.execute(INITIAL.APPEND_ONLY)
            probe.execute("INSERT INTO console_auditevent (actor_id, action) VALUES (1, 'x')")
            yield probe
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_truncate_is_refused_outside_test_databases(production_like_database):
    import psycopg

    probe = production_like_database
    for sql in (
        "TRUNCATE console_auditevent",
        "DELETE FROM console_auditevent",
        "UPDATE console_auditevent SET action = 'y'",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            probe.execute(sql)
    assert probe.execute("SELECT count(*) FROM console_auditevent").fetchone() == (1,)
    # The one change the database must make itself: a deleted user's id becomes NULL.
    probe.execute("UPDATE console_auditevent SET actor_id = NULL")


def test_deleting_the_user_keeps_the_name(event, django_user_model):
    django_user_model.objects.filter(username="ana").delete()
    event.refresh_from_db()
    assert event.actor is None and event.actor_name == "ana"
