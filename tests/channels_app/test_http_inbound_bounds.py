"""Bounds on what HTTP inbound reads (a real HTTP server): deeply nested JSON is refused 400 with
the reason, an oversize body 413; both are stored with their error, as any unreadable message
is (an oversize one by its head, like an MLLP frame); never a 500 with nothing stored."""

from __future__ import annotations

import pytest

from adapters.codecs.bounded_json import MAX_DEPTH
from channels_app.models import Channel, Message
from tests import factories
from tests.support import inbound_client, post_inbound, signed_in

pytestmark = pytest.mark.django_db(transaction=True)

DEPTH = 50_000  # far past Python's recursion limit, yet only 100 kB


def deep_fhir() -> bytes:
    return b'{"resourceType": "Patient", "extension": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"


@pytest.fixture
def client(live_server):
    with inbound_client(live_server.url, "deep-sender") as client:
        yield client


def test_deep_fhir_json_is_refused_and_stored_with_its_error(client, viewer_user):
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    response = post_inbound(client, channel, deep_fhir(), "application/fhir+json")
    assert response.status_code == 400, response.text
    assert f"nested deeper than {MAX_DEPTH} levels" in response.json()["detail"]
    kept = Message.objects.get(pk=response.json()["message_id"])
    assert kept.status == Message.Status.ERROR and kept.error_stage == "parse"
    assert "nested deeper" in kept.error_detail
    assert kept.size == len(deep_fhir())  # what was sent is kept
    # ... and can be looked at: the page and the masked API body, as a viewer.
    viewer = signed_in(viewer_user)
    assert viewer.get(f"/messages/{kept.pk}/").status_code == 200
    body = viewer.get(f"/api/v1/messages/{kept.pk}/body/")
    assert body.status_code == 200 and body.json()["revealed"] is False


def test_deep_custom_json_is_refused_and_stored_with_its_error(client):
    json_map = {"resources": ["Patient"], "rules": [{"source": "id", "target": "Patient.id"}]}
    channel = factories.channel(
        0,
        source_type=Channel.SourceType.HTTP,
        source_config={"inbound": "json", "json_map": json_map},
    )
    body = b'{"id": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"
    response = post_inbound(client, channel, body, "application/json")
    assert response.status_code == 400, response.text
    assert f"nested deeper than {MAX_DEPTH} levels" in response.json()["detail"]
    kept = Message.objects.get(pk=response.json()["message_id"])
    assert kept.status == Message.Status.ERROR and kept.error_stage == "parse"


def test_an_oversize_body_is_refused_and_its_head_stored_with_the_error(client):
    channel = factories.channel(
        0, source_type=Channel.SourceType.HTTP, source_config={}, max_message_bytes=2000
    )
    body = factories.oru_r01("BIG-1", n_obx=40)
    assert len(body) > 2000
    response = post_inbound(client, channel, body, "x-application/hl7-v2+er7")
    assert response.status_code == 413, response.text
    assert "larger than 2000 bytes" in response.json()["detail"]
    kept = Message.objects.get(pk=response.json()["message_id"])
    assert kept.status == Message.Status.ERROR and kept.error_stage == "framing"
    assert kept.control_id == "BIG-1"  # the header is read from the head that was kept
