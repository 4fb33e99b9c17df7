"""Fixtures with real parts: PostgreSQL (pytest-django), Redis, Celery worker, MLLP, HTTP."""

from __future__ import annotations

import pytest

from tests.support import CORPUS, FhirSink, ListenerThread, free_port


@pytest.fixture
def corpus():
    if not CORPUS.is_dir():
        pytest.skip(f"HL7 corpus not found at {CORPUS} (set HL7_CORPUS)")
    return CORPUS


@pytest.fixture
def redis_client():
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()  # no stale tasks from an earlier test may reach this test's worker
    yield client
    client.close()


@pytest.fixture
def celery_worker(transactional_db, redis_client):
    """A real Celery worker (threads pool) consuming every queue, against the test database."""
    from celery.contrib.testing.worker import start_worker

    from console.celery import app

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=["default", "process", "deliver"],
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture
def fhir_sink():
    sink = FhirSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def mllp_port():
    return free_port()


@pytest.fixture
def listener(transactional_db, mllp_port):
    """Start the production listener for the channels given; stopped at teardown."""
    from channels_app.management.commands.run_listeners import database_conninfo, listener_specs

    started: list[ListenerThread] = []

    def start(*channels):
        specs = listener_specs([c.name for c in channels])
        thread = ListenerThread(specs, database_conninfo()).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture(scope="session", autouse=True)
def close_worker_connections(django_db_setup, django_db_blocker):
    """Worker threads keep their database connections (as production workers do); end them so
    the test database can be dropped at the end of the session."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
