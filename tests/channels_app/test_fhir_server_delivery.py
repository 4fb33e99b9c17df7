"""A corpus message through the whole hub (MLLP in, Celery worker out) to a real validating FHIR
server (Medplum's, tests/fhir_server) that caps transactions: the transaction destination's
attempt says why it was refused and which mode fits; the batch destination delivers it whole."""

from __future__ import annotations

import pytest

from adapters.transports.mllp import MLLPClient
from channels_app.models import Attempt, Delivery, Message
from tests import factories
from tests.fhir_server import MedplumServer
from tests.support import require_corpus, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ORU = "oru/fhirconv_oru_r01_v251.hl7"  # 42 entries, all conditional


@pytest.fixture
def medplum():
    server = MedplumServer().start()
    yield server
    server.stop()


def test_a_transaction_over_the_limit_fails_saying_which_mode_fits_and_batch_delivers(
    mllp_port, listener, celery_worker, medplum
):
    channel = factories.channel(mllp_port)
    transaction = factories.fhir_destination(
        channel, medplum.url, name="as transaction", timeout_s=30
    )
    batch = factories.fhir_destination(
        channel,
        medplum.url,
        name="as batches",
        timeout_s=30,
        config={"base_url": medplum.url, "mode": "batch"},
    )
    listener(channel)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send((require_corpus() / ORU).read_bytes())
    wait_for(
        lambda: (
            Delivery.objects.filter(
                status__in=(Delivery.Status.DELIVERED, Delivery.Status.FAILED)
            ).count()
            == 2
        ),
        timeout=90,
        what="both deliveries settled",
    )
    refused = Delivery.objects.get(destination=transaction)
    assert refused.status == Delivery.Status.FAILED and refused.attempt_count == 1  # no retries
    [attempt] = Attempt.objects.filter(delivery=refused)
    assert attempt.outcome == Attempt.Outcome.PERMANENT and attempt.status_code == 400
    entries = len(Message.objects.get().canonical_json["entry"])
    assert entries > 8
    assert attempt.error.startswith(
        f"server limit: the server refused a transaction of {entries} entries"
    )
    assert "Transaction requires strict isolation but has too many entries" in attempt.error
    assert attempt.error.endswith("use mode batch (one batch per dependency level) or per_resource")
    assert attempt.issues[-1]["code"] == "too-costly"

    assert Delivery.objects.get(destination=batch).status == Delivery.Status.DELIVERED
    [patient] = medplum.search("Patient")
    observations = medplum.search("Observation")
    assert observations
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{patient['id']}"}
