"""The demo channel pointed at a validating FHIR server (``DEMO_FHIR_URL``; Medplum's here, which
caps transactions): the message from an unknown sender that is too large for a transaction is
delivered as batches in the same attempt, and the attempt says so."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from adapters.codecs import exact_json, hl7v2
from adapters.mapping.convert import convert
from adapters.transports.base import Payload
from channels_app.management.commands.seed_demo import DEMO_CHANNEL
from channels_app.models import Destination
from channels_app.pipeline import deliver
from tests.fhir_server import MedplumServer
from tests.support import require_corpus

pytestmark = pytest.mark.django_db

ORU = "oru/fhirconv_oru_r01_v251.hl7"  # 46 entries, all conditional: over Medplum's limit


@pytest.fixture
def medplum():
    server = MedplumServer().start()
    yield server
    server.stop()


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
