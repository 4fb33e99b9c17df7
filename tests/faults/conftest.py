"""Fixtures of the fault suite: its own Redis, a hub of real processes per scenario, the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.hub import FaultHub
from tests.faults.services import NoServerUser, PostgresCluster, RedisServer
from tests.support import IdempotentSink, database_url_for_processes, prerequisite_missing


@pytest.fixture(scope="session")
def own_redis(tmp_path_factory):
    """A Redis the suite may flush and restart; the shared one is never touched."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def fault_hub(transactional_db, own_redis):
    """``fault_hub(scenario, sink=..., database_url=..., **destination)``: a configured hub, not
    yet started, on the test database unless told otherwise. Its processes are stopped (and their
    sessions ended) at teardown."""
    hubs: list[FaultHub] = []
    if not own_redis.ping():  # a scenario before this one may have left it down
        own_redis.start()
    own_redis.client().flushall()

    def make(
        scenario: str,
        sink: IdempotentSink | None = None,
        database_url: str | None = None,
        **destination,
    ) -> FaultHub:
        hub = FaultHub(scenario, database_url or database_url_for_processes(), own_redis.url)
        hubs.append(hub)
        sink = (sink or IdempotentSink()).start()
        return hub.configure(sink, in_process=database_url is None, **destination)

    yield make
    for hub in hubs:
        hub.stop()
    _end_sessions()


@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster of the scenario's own, migrated, that it may crash and restart."""
    import os
    import subprocess
    import sys
    import tempfile

    from tests.support import REPO

    # Not under pytest's root-only tmp: the server runs as an unprivileged user.
    workdir = Path(tempfile.mkdtemp(prefix="hub-faults-pg-"))
    try:
        cluster = PostgresCluster(workdir)
    except NoServerUser as exc:
        prerequisite_missing(str(exc))
    cluster.init().start()
    url = cluster.create_database("hub")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
    )
    yield cluster, url
    cluster.destroy()


def _end_sessions() -> None:
    """Sessions of killed processes may linger a moment; the test database is flushed next."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name NOT LIKE 'pg_%%'"
        )


def pytest_terminal_summary(terminalreporter):
    from tests.faults import report

    if report.RECORDED:
        terminalreporter.section("fault figures (every AA'd message exactly once at the sink)")
        terminalreporter.write_line(report.table(report.RECORDED))
