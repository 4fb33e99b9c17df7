"""The destination refuses connections for a while, then comes back on the same port."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

DOWN_S = 5


def test_destination_refusing_then_recovering(fault_hub):
    hub = fault_hub("destination refusing 5 s").start(workers=1)
    traffic = hub.send(300, rate=100)
    time.sleep(1)
    hub.sink.stop()
    time.sleep(DOWN_S)
    hub.sink.start()
    back_at = time.monotonic()
    traffic.wait()

    figures = hub.drain(since=back_at, notes=f"refused for {DOWN_S} s")
    figures.assert_exactly_once()
    assert figures.retries, "the refusal was not felt: no attempt failed"
