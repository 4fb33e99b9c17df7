"""The destination answers 503 to 30% of requests, at random: retries, one effect each."""

from __future__ import annotations

import pytest

from tests.support import IdempotentSink

pytestmark = pytest.mark.django_db(transaction=True)


def test_destination_answering_503_at_random(fault_hub):
    sink = IdempotentSink(error_rate=0.3, seed=6)
    hub = fault_hub("destination 503 at random (30%)", sink=sink).start(workers=1)
    hub.send(300, rate=100)

    figures = hub.drain()
    figures.notes = f"{sink.status_counts()[503]} answers were 503"
    figures.assert_exactly_once()
    assert sink.status_counts()[503] > 30
