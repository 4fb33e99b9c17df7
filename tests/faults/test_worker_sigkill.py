"""A worker SIGKILLed while it is sending: restarted, it finishes, each message applied once."""

from __future__ import annotations

import time

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_sigkill_mid_delivery(fault_hub):
    hub = fault_hub("worker SIGKILL mid-delivery").start(workers=1)
    hub.sink.hold_s = 0.5  # sends linger at the destination: the kill lands mid-send
    traffic = hub.send(200, rate=100)
    wait_for(lambda: len(hub.sink.requests) >= 20, timeout=60, what="deliveries under way")
    hub.processes.kill("worker1")  # the supervisor restarts it, as systemd would
    killed_at = time.monotonic()
    in_flight = hub.open_work()[1]
    hub.sink.hold_s = 0
    traffic.wait()

    figures = hub.drain(since=killed_at, notes=f"{in_flight} deliveries open at the kill")
    figures.assert_exactly_once()  # and the killed worker is the one process restarted
    assert hub.processes.restarts == {"worker1": 1}
    assert figures.absorbed or figures.requests > figures.delivered or in_flight
