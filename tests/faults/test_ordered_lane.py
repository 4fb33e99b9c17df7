"""Ordered lanes under a flaky destination: per patient (PID-3), the destination applies the
messages in the order the hub received them, each once, while patients run in parallel."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.support import IdempotentSink

pytestmark = pytest.mark.django_db(transaction=True)

PATIENTS = 10


def test_ordered_lanes_stay_in_order_through_503s(fault_hub):
    sink = IdempotentSink(error_rate=0.3, seed=7)
    hub = fault_hub("ordered lanes, 503 at random (30%)", sink=sink, ordering_key="PID-3.1")
    hub.start(workers=1)
    traffic = hub.send(200, patients=PATIENTS, rate=100)

    out_of_order: dict[int, list[int]] = {}

    def judge_order() -> str:
        received = hub.received_order()
        lanes = defaultdict(list)  # patient -> message ids, in the order the sink applied them
        for control_id in list(sink.control_id_of.values()):
            lanes[int(control_id.rsplit("-", 1)[1]) % PATIENTS].append(received[control_id])
        out_of_order.update({k: ids for k, ids in lanes.items() if ids != sorted(ids)})
        return f"{len(lanes)} lanes, {len(out_of_order)} out of order"

    figures = hub.drain(notes=judge_order)
    figures.assert_exactly_once()
    assert traffic.sent.acked
    assert sink.status_counts()[503] and figures.retries, "the 503s were not felt"
    assert not out_of_order, out_of_order
