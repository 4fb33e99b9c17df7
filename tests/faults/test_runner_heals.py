"""`make run` heals itself: each of its processes SIGKILLed in turn while MLLP traffic flows
comes back (the runner starts it again, its heartbeat says so), the others keep running, and
every acknowledged message reaches the destination exactly once. SIGTERM then stops them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.faults.hub import DESTINATION, HUB_ENV, VAR, Figures, Traffic, record
from tests.faults.services import terminate
from tests.support import REPO, IdempotentSink, database_url_for_processes, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = ["worker", "deliver", "beat", "listeners", "web"]


def _demo_channel(port: int, sink: IdempotentSink) -> None:
    """The channel seed_demo finds and keeps, with the suite's fast retry policy."""
    from channels_app.management.commands.seed_demo import DEMO_CHANNEL
    from channels_app.models import Channel, Destination

    channel = Channel.objects.create(
        name=DEMO_CHANNEL,
        source_config={"host": "127.0.0.1", "port": port},
        dedupe_window_s=3600,
    )
    Destination.objects.create(
        channel=channel,
        name="FHIR server",
        transport=Destination.Transport.FHIR_REST,
        config={"base_url": sink.url},
        **DESTINATION,
    )


def _live(role: str):
    """The heartbeat of the running process of ``role`` (the newest, beating)."""
    from channels_app.models import ProcessHeartbeat
    from channels_app.process_heartbeat import is_silent

    rows = ProcessHeartbeat.objects.filter(role=role).order_by("-started_at")
    return next((row for row in rows if not is_silent(row.beat_at)), None)


def test_each_process_of_the_runner_comes_back_and_nothing_acknowledged_is_lost(
    own_redis, tmp_path, settings
):
    settings.HUB = {**settings.HUB, "HEARTBEAT_EVERY_S": 1}  # judging liveness as the page does
    sink = IdempotentSink().start()
    mllp_port = free_port()
    _demo_channel(mllp_port, sink)
    logs = VAR / "runner-heals"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **HUB_ENV,
        "DATABASE_URL": database_url_for_processes(),
        "REDIS_URL": own_redis.url,
        "DEMO_MLLP_PORT": str(mllp_port),
        "DEMO_FHIR_URL": sink.url,
        "WEB_PORT": str(free_port()),
        "HUB_VAR_DIR": str(tmp_path),
        "HEARTBEAT_EVERY_S": "1",
        "RESTART_BACKOFF_MAX_S": "2",
        "WORKER_CONCURRENCY": "1",
        "DELIVER_THREADS": "4",
    }
    env.pop("CELERY_BROKER_URL", None)
    own_redis.client().flushall()
    output = logs / "runner.log"
    with open(output, "wb") as log:
        runner = subprocess.Popen(
            [sys.executable, "-m", "console.run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: all(_live(role) for role in ROLES) or runner.poll() is not None,
            timeout=180,
            interval=0.5,
            what="every process's first heartbeat",
        )
        assert runner.poll() is None, output.read_text()
        wait_for(
            lambda: _live("listeners").sockets == [f"127.0.0.1:{mllp_port}"],
            timeout=30,
            what="the listener's socket on its heartbeat",
        )
        traffic = _traffic(mllp_port)
        for role in ROLES:
            _kill_and_see_it_back(role, runner, output)
        sent = traffic.wait(timeout=600)
        figures = _drain(sent, sink)
        figures.assert_exactly_once()
        said = output.read_text()
        for role in ROLES:
            assert f"[runner] {role} (pid" in said and "was killed by SIGKILL" in said
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(60) == 0, output.read_text()[-3000:]
        assert "stopped." in output.read_text()
        # Every process stopped on purpose leaves no heartbeat row behind.
        from channels_app.models import ProcessHeartbeat

        left = ProcessHeartbeat.objects.values_list("role", "pid")
        assert list(left) == []
    finally:
        if runner.poll() is None:
            terminate(runner, timeout=30)
        sink.stop()
        _end_sessions()


def _traffic(port: int) -> Traffic:
    from tests import factories

    messages = {
        f"HEAL-{i:05d}": factories.adt_a01(f"HEAL-{i:05d}", mrn=f"M{i % 97}") for i in range(400)
    }
    # Slow enough to be still flowing while the processes are killed one by one.
    return Traffic(port, messages, rate=6, patience_s=120).start()


def _kill_and_see_it_back(role: str, runner: subprocess.Popen, output) -> None:
    before = _live(role)
    os.kill(before.pid, signal.SIGKILL)
    wait_for(
        lambda: (
            ((row := _live(role)) is not None and row.pid != before.pid and row.restarts == 1)
            or runner.poll() is not None
        ),
        timeout=120,
        interval=0.5,
        what=f"{role} back after SIGKILL",
    )
    assert runner.poll() is None, output.read_text()[-3000:]
    # The System page shows the process that took over, not the dead one beside it.
    from channels_app.models import ProcessHeartbeat

    assert not ProcessHeartbeat.objects.filter(pid=before.pid).exists()
    # The others were never touched.
    for other in set(ROLES) - {role}:
        assert _live(other) is not None, f"{other} went away when {role} was killed"


def _drain(sent, sink: IdempotentSink) -> Figures:
    started = time.monotonic()
    with contextlib.suppress(AssertionError):  # judged below: what is missing shows as lost
        wait_for(
            lambda: sent.acked <= set(sink.effects_by_control_id()),
            timeout=180,
            interval=0.2,
            what="every acknowledged message delivered",
        )
    time.sleep(1.0)  # a late duplicate would show now
    effects = sink.effects_by_control_id()
    figures = Figures(
        scenario="runner: each process SIGKILLed, restarted",
        sent=len(sent.control_ids),
        acked=len(sent.acked),
        delivered=len(sent.acked & set(effects)),
        duplicates=sum(n - 1 for n in effects.values()),
        lost=len(sent.acked - set(effects)),
        drain_s=round(time.monotonic() - started, 2),
        naks=sent.naks,
        silences=sent.silences,
        requests=len(sink.requests),
        absorbed=sum(sink.repeats.values()),
        unknown=len(set(effects) - set(sent.control_ids)),
        notes="worker, deliver, beat, listeners, web killed in turn; runner restarted each",
    )
    record(figures)
    return figures


def _end_sessions() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name NOT LIKE 'pg_%%'"
        )
