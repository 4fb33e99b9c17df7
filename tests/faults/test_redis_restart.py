"""Redis dies (SIGKILL, no persistence) and comes back empty: every process reconnects, and the
sweeper finds what the lost queues held."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_S = 3


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
    figures.assert_exactly_once()
    assert "Connection to broker lost" in hub.processes.log("worker1"), "the outage was not felt"
