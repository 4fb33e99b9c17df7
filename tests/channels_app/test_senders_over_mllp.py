"""Messages from senders outside the corpus (tests/adapters/mapping/senders) sent over a real MLLP
socket to the production listener: each is answered AA, processed, and delivered whole (batch
mode) to a real validating FHIR server (Medplum's, tests/fhir_server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.codecs import hl7v2
from adapters.transports.mllp import MLLPClient
from channels_app.models import Delivery, Message
from tests import factories
from tests.fhir_server import MedplumServer
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SENDERS = Path(__file__).parents[1] / "adapters" / "mapping" / "senders"


@pytest.fixture
def medplum():
    server = MedplumServer().start()
    yield server
    server.stop()


def test_every_senders_message_is_acked_aa_and_delivered(
    mllp_port, listener, celery_worker, medplum
):
    channel = factories.channel(mllp_port, dedupe_window_s=0)
    config = {"base_url": medplum.url, "mode": "batch"}
    factories.fhir_destination(channel, medplum.url, timeout_s=30, config=config)
    listener(channel)
    files = sorted(SENDERS.glob("*.hl7"))
    acks = {}
    with MLLPClient("127.0.0.1", mllp_port) as client:
        for path in files:
            ack = hl7v2.parse(client.send(path.read_bytes()))
            acks[path.name] = (ack.get("MSA-1"), ack.get("MSA-3"))
    assert {name: ack for name, ack in acks.items() if ack[0] != "AA"} == {}
    assert Message.objects.count() == len(files) >= 40
    settled = (Delivery.Status.DELIVERED, Delivery.Status.FAILED)
    wait_for(
        lambda: Delivery.objects.filter(status__in=settled).count() == len(files),
        timeout=180,
        what="every message's delivery settled",
    )
    failed = Delivery.objects.exclude(status=Delivery.Status.DELIVERED)
    assert [(d.message.message_type, d.last_error) for d in failed] == []
    assert [m.error_detail for m in Message.objects.exclude(status=Message.Status.PROCESSED)] == []
    assert len(medplum.search("Patient")) >= 25  # the senders' distinct patients, stored
