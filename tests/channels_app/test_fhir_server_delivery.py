"""A corpus message through the whole hub (MLLP in, Celery worker out) to a real validating FHIR
server (Medplum's, tests/fhir_server) that caps transactions: a transaction destination sends the
refused Bundle as batches in the same attempt and says so; one set to fail says why it was
refused and which mode fits. The demo channel (seed_demo with ``DEMO_FHIR_URL``) is such a
transaction destination."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from adapters.codecs import exact_json, hl7v2
from adapters.mapping.convert import convert
from adapters.transports.base import Payload
from adapters.transports.mllp import MLLPClient
from channels_app.management.commands.seed_demo import DEMO_CHANNEL
from channels_app.models import Attempt, Delivery, Destination, Message
from channels_app.pipeline import deliver
from tests import factories
from tests.fhir_server import MedplumServer
from tests.support import require_corpus, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ORU = "oru/fhirconv_oru_r01_v251.hl7"  # 46 entries, all conditional: over Medplum's limit


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


def test_the_demo_delivers_a_message_too_large_for_a_transaction_as_batches(
    medplum, monkeypatch, settings, tmp_path
):
    settings.HUB = {**settings.HUB, "OUTBOX_DIR": str(tmp_path)}
    monkeypatch.setenv("DEMO_FHIR_URL", medplum.url)
    call_command("seed_demo", stdout=StringIO())
    [destination] = Destination.objects.filter(channel__name=DEMO_CHANNEL, enabled=True)
    assert destination.config["mode"] == "transaction"
    transport = deliver._transport(
        destination.transport, json.dumps(destination.config, sort_keys=True)
    )
    bundle = convert(hl7v2.parse((require_corpus() / ORU).read_bytes())).bundle
    body = exact_json.dumps(bundle).encode()
    result = transport.send(
        Payload(body, "application/fhir+json", "demo-1", "m1", None, 1), timeout=60
    )
    assert result.status_code == 200
    assert result.summary.startswith(f"server refused a transaction of {len(bundle['entry'])} ")
    assert "sent as a batch instead: entries are not applied atomically" in result.summary
    assert len(medplum.search("Patient")) == 1
    assert medplum.search("Observation")
