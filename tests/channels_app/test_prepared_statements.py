"""The pipeline's batch statements are prepared on the server once they repeat, so PostgreSQL
stops planning them for every batch; with HUB_PREPARED_STATEMENTS off they run unprepared and
the pipeline works the same."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from channels_app.models import Delivery, Message
from channels_app.pipeline import deliver, process
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

BATCHES = 7  # psycopg prepares a statement the fifth time a connection runs it


def run_batches(channel) -> list[Delivery]:
    for n in range(BATCHES):
        message = Message.objects.create(
            channel=channel, raw=factories.adt_a01(f"P-{n}", mrn=f"MRN{n}"), control_id=f"P-{n}"
        )
        deliver.deliver(process.process_messages([message.id]))
    return list(Delivery.objects.filter(message__channel=channel))


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_claims_loads_and_settles_are_prepared(fhir_sink, redis_client):
    channel = factories.channel(40200)
    factories.fhir_destination(channel, fhir_sink.url)
    deliveries = run_batches(channel)
    assert [d.status for d in deliveries] == [Delivery.Status.DELIVERED] * BATCHES
    found = prepared_statements()
    for name, statement in [
        ("process claim", process.CLAIM),
        ("process save", process.SAVE),
        ("channels read", process.CHANNELS),
        ("delivery claim", deliver.CLAIM),
        ("body load", deliver.LOAD_BODIES),
        ("settle", deliver.SETTLE),
    ]:
        head = statement.strip().split("\n")[1].strip()  # a line the statement's text keeps
        assert any(head in s for s in found), f"the {name} is not prepared: {found}"


def test_with_prepared_statements_off_nothing_is_prepared_and_messages_go_through(
    fhir_sink, redis_client
):
    connection.close()  # a fresh connection: nothing prepared by an earlier test
    channel = factories.channel(40201)
    factories.fhir_destination(channel, fhir_sink.url)
    with override_settings(HUB={**settings.HUB, "PREPARED_STATEMENTS": False}):
        deliveries = run_batches(channel)
    assert [d.status for d in deliveries] == [Delivery.Status.DELIVERED] * BATCHES
    assert len(fhir_sink.requests) == BATCHES
    assert prepared_statements() == []
