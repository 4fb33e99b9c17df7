"""Redis loses every queued task, three times, while messages arrive: the sweeper re-sends them."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def queued_tasks(client) -> int:
    """Tasks waiting in Redis (kombu keeps each queue as a list)."""
    return sum(client.llen(key) for key in client.scan_iter() if client.type(key) == b"list")


def test_redis_flushall_during_traffic(fault_hub, own_redis):
    hub = fault_hub("Redis FLUSHALL x3 during traffic").start(workers=1)
    hub.sink.hold_s = 0.2  # a slow destination: deliveries queue up in Redis, for the flush
    traffic = hub.send(300, rate=100)
    flushed_tasks = 0
    for _ in range(3):
        time.sleep(0.8)
        client = own_redis.client()
        flushed_tasks += queued_tasks(client)
        client.flushall()
    hub.sink.hold_s = 0
    flushed_at = time.monotonic()
    traffic.wait()

    figures = hub.drain(since=flushed_at, notes=f"3 flushes, 0.8 s apart: {flushed_tasks} tasks")
    figures.assert_exactly_once()
    assert flushed_tasks, "the flushes were not felt: no task was waiting in Redis"
