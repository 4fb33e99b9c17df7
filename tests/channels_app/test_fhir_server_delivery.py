"""A corpus message through the whole hub (MLLP in, Celery worker out) to a real validating FHIR
server (Medplum's, tests/fhir_server) that caps transactions: a transaction destination sends the
refused Bundle as batches in the same attempt and says so; one set to fail says why it was
refused and which mode fits."""

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


def test_a_transaction_over_the_limit_is_delivered_as_batches_or_fails_saying_which_mode_fits(
    mllp_port, listener, celery_worker, medplum
):
    channel = factories.channel(mllp_port)
    falls_back = factories.fhir_destination(channel, medplum.url, name="default", timeout_s=30)
    fails = factories.fhir_destination(
        channel,
        medplum.url,
        name="fail",
        timeout_s=30,
        config={"base_url": medplum.url, "if_too_large": "fail"},
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
    entries = len(Message.objects.get().canonical_json["entry"])
    assert entries > 8
    refused = f"server refused a transaction of {entries} entries"

    delivered = Delivery.objects.get(destination=falls_back)
    assert delivered.status == Delivery.Status.DELIVERED and delivered.attempt_count == 1
    [attempt] = Attempt.objects.filter(delivery=delivered)
    assert attempt.outcome == Attempt.Outcome.SUCCESS and attempt.status_code == 200
    assert attempt.response_summary.startswith(refused)
    assert "for its size limit (Transaction requires strict isolation but has too many " in (
        attempt.response_summary
    )
    assert "sent as a batch instead: entries are not applied atomically; batch: " in (
        attempt.response_summary
    )
    assert attempt.request_summary.startswith(f"POST {medplum.url} (a transaction, refused")
    assert attempt.issues[0]["severity"] == "warning"
    [patient] = medplum.search("Patient")
    observations = medplum.search("Observation")
    assert observations
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{patient['id']}"}

    failed = Delivery.objects.get(destination=fails)
    assert failed.status == Delivery.Status.FAILED and failed.attempt_count == 1  # no retries
    [attempt] = Attempt.objects.filter(delivery=failed)
    assert attempt.outcome == Attempt.Outcome.PERMANENT and attempt.status_code == 400
    assert attempt.error.startswith(f"server limit: the {refused}")
    assert "Transaction requires strict isolation but has too many entries" in attempt.error
    assert attempt.error.endswith("use mode batch (one batch per dependency level) or per_resource")
    assert attempt.issues[-1]["code"] == "too-costly"
