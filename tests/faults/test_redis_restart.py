"""Redis dies (SIGKILL, no persistence) and comes back empty: every process reconnects, and the
sweeper finds what the lost queues held."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_S = 3


# Found when the harness began to count restarts: now and then the worker exits when Redis goes
# away (kombu 5.7 restores its unacknowledged tasks on a connection it has already released) and
# only the supervisor brings it back. That crash, and only that one, makes this scenario an xfail
# (shown in every summary) once everything else about it has passed; any other restart fails it.
KOMBU_CRASH = (
    "Unrecoverable error: AttributeError(\"'NoneType' object has no attribute 'hostname'\")"
)


def test_redis_restart_during_traffic(fault_hub, own_redis):
    hub = fault_hub("Redis killed, restarted empty").start(workers=1)
    traffic = hub.send(300, rate=100)
    time.sleep(1)
    own_redis.kill()
    time.sleep(DOWN_S)
    own_redis.start()
    back_at = time.monotonic()
    traffic.wait()

    figures = hub.drain(since=back_at, notes=f"down {DOWN_S} s")
    worker_crashed = set(hub.processes.restarts) == {"worker1"} and KOMBU_CRASH in (
        hub.processes.log("worker1")
    )
    if worker_crashed:
        figures.unexpected_restarts = ""  # judged below, after everything else
    figures.assert_exactly_once()
    assert "Connection to broker lost" in hub.processes.log("worker1"), "the outage was not felt"
    if worker_crashed:
        pytest.xfail("the Celery worker died when Redis restarted (kombu restore_unacked)")
