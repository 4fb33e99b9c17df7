"""The broker transport a worker consumes with survives Redis vanishing mid-BRPOP: the worker's
connection is torn down as Celery does it on connection loss, without an unrecoverable error."""

from __future__ import annotations

import pytest
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Queue

from console import broker
from console.celery import app
from tests.faults.services import RedisServer

TASKS = Queue("probe", Exchange("probe"), "probe")
# A broadcast queue on a channel of its own, as Celery's remote control (pidbox) has.
BROADCAST = Queue("probe.pidbox", Exchange("probe.pidbox", type="fanout"), auto_delete=True)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_workers_consume_with_the_hub_transport():
    with app.connection_for_read() as connection:
        assert isinstance(connection.transport, broker.Transport)


def test_worker_connection_closes_after_redis_vanished_mid_brpop(redis_server):
    connection = Connection(redis_server.url, transport=settings.CELERY_BROKER_TRANSPORT)
    tasks = connection.default_channel
    connection.Producer(tasks).publish(
        {"n": 1}, exchange=TASKS.exchange, routing_key="probe", declare=[TASKS]
    )
    assert TASKS(tasks).get(no_ack=False), "a task taken and not acknowledged yet"
    Consumer(tasks, [TASKS], callbacks=[lambda body, message: None]).consume()
    Consumer(connection.channel(), [BROADCAST], no_ack=True).consume()
    connection.transport.cycle.on_poll_start()  # the worker sends its BRPOP and SUBSCRIBE, and waits
    assert tasks._in_poll, "a BRPOP in flight"

    redis_server.kill()
    connection.collect()  # what a Celery consumer does when its connection breaks, then...
    connection.close()  # ...this, which raised AttributeError ('hostname') and ended the worker

    assert tasks.closed
