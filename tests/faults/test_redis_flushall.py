"""Redis loses every queued task, three times, while messages arrive: the sweeper re-sends them."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_redis_flushall_during_traffic(fault_hub, own_redis):
    hub = fault_hub("Redis FLUSHALL x3 during traffic").start(workers=1)
    traffic = hub.send(300, rate=100)
    for _ in range(3):
        time.sleep(0.8)
        own_redis.client().flushall()
    flushed_at = time.monotonic()
    traffic.wait()

    figures = hub.drain(since=flushed_at, notes="3 flushes, 0.8 s apart")
    figures.assert_exactly_once()
