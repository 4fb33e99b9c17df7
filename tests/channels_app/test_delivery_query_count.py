"""Delivery overhead in the database stays flat: a batch costs the same few queries at any size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.models import Delivery, Message
from channels_app.pipeline import deliver, process
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def routed(channel, n: int) -> list[int]:
    ids = [
        Message.objects.create(
            channel=channel, raw=factories.adt_a01(f"Q-{i}"), control_id=f"Q-{i}"
        ).id
        for i in range(n)
    ]
    return process.process_messages(ids)


@pytest.mark.parametrize("batch", [1, 20])
def test_at_most_four_queries_per_delivered_message(batch, fhir_sink):
    channel = factories.channel(40100 + batch)
    factories.fhir_destination(channel, fhir_sink.url)
    delivery_ids = routed(channel, batch)
    with CaptureQueriesContext(connection) as queries:
        outcomes = deliver.deliver(delivery_ids)
    assert [o.status for o in outcomes] == [Delivery.Status.DELIVERED] * batch
    statements = [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    # claim, load bodies, insert attempts, settle: the same four whatever the batch size
    assert len(statements) <= 4, statements
    assert len(fhir_sink.requests) == batch
