"""Production's two URLs: `manage.py migrate` runs as DATABASE_OWNER_URL's role, then grants
DATABASE_URL's role its rows; the app's role then cannot undo the audit.

A scratch database and a login role of the test's own on the suite's PostgreSQL, whose configured
(superuser) role plays the owner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "scratch-app-password-1"


@pytest.fixture
def scratch():
    """(owner URL, app URL, app role, connect as app) for a new database; all dropped after."""
    params = connection.settings_dict
    owner = params["USER"]
    database, role = f"hub_migrate_probe_{os.getpid()}", f"hub_app_migrate_{os.getpid()}"
    admin_url = _url(params, owner, params["PASSWORD"], "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER PASSWORD '{PASSWORD}'")
        admin.execute(f'CREATE DATABASE "{database}"')
    owner_url = _url(params, owner, params["PASSWORD"], database)
    app_url = _url(params, role, PASSWORD, database)
    try:
        yield owner_url, app_url, role
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def _url(params: dict, user: str, password: str, database: str) -> str:
    """A URL to the suite's server (over TCP, or a socket directory as the embedded one)."""
    secret = f":{password}" if password else ""
    host, port = params["HOST"] or "127.0.0.1", params["PORT"] or "5432"
    if host.startswith("/"):
        return f"postgresql://{user}{secret}@/{database}?host={host}"
    return f"postgresql://{user}{secret}@{host}:{port}/{database}"


def _manage(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_migrate_runs_as_the_owner_and_the_app_role_cannot_undo_the_audit(scratch):
    owner_url, app_url, role = scratch
    done = _manage("migrate", "-v", "1", DATABASE_URL=app_url, DATABASE_OWNER_URL=owner_url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Granted the app role '{role}' its rows." in done.stdout

    with psycopg.connect(app_url) as app:
        owners = app.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        assert owners and (role,) not in owners  # the owner made every table
        app.execute(
            "INSERT INTO console_auditevent (at, actor_name, user_agent, action, target, detail)"
            " VALUES (now(), 'ana', '', 'config.change', 'channel:1', '{}')"
        )
        app.commit()
        for statement in (
            "SET LOCAL session_replication_role = replica",
            "ALTER TABLE console_auditevent DISABLE TRIGGER ALL",
            "DROP TRIGGER console_audit_no_change ON console_auditevent",
            "DELETE FROM console_auditevent",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
            app.rollback()
        assert app.execute("SELECT count(*) FROM console_auditevent").fetchone() == (1,)


def test_the_app_role_alone_cannot_migrate(scratch):
    """Without DATABASE_OWNER_URL, migrate runs as the app's role, which may create nothing."""
    _, app_url, _ = scratch
    done = _manage("migrate", "-v", "0", DATABASE_URL=app_url)
    assert done.returncode != 0 and "permission denied" in done.stderr


def test_the_owner_url_must_name_the_same_database(scratch):
    owner_url, app_url, _ = scratch
    elsewhere = owner_url.replace("hub_migrate_probe_", "another_")
    done = _manage("migrate", "-v", "0", DATABASE_URL=app_url, DATABASE_OWNER_URL=elsewhere)
    assert done.returncode != 0
    assert "DATABASE_OWNER_URL must name the same database as DATABASE_URL" in done.stderr
