"""No request body larger than MAX_REQUEST_BYTES is taken in (console/body_limit.py), on daphne as
production runs it: refused 413 before Django reads it, whether its length is declared or it
comes in chunks; a body under that ceiling but over a channel's own limit is still answered by the
channel (413, its head kept with the error)."""

from __future__ import annotations

import pytest

from channels_app.models import Channel, Message
from tests import factories
from tests.support import daphne_server, inbound_client, post_inbound

pytestmark = pytest.mark.django_db(transaction=True)

CEILING = 64 * 1024


@pytest.fixture
def web(monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_BYTES", str(CEILING))
    with daphne_server() as url, inbound_client(url, "big-sender") as client:
        yield client


@pytest.fixture
def channel():
    return factories.channel(
        0, source_type=Channel.SourceType.HTTP, source_config={}, max_message_bytes=16 * 1024
    )


def hl7_of(size: int) -> bytes:
    head = b"MSH|^~\\&|BIG|F|HUB|F|202601010000||ADT^A01|BIG1|P|2.5\rPID|||1||"
    return head + b"X" * (size - len(head))


def test_a_declared_length_over_the_ceiling_is_refused_unread(web, channel):
    response = post_inbound(web, channel, hl7_of(CEILING + 1), "application/hl7-v2")
    assert response.status_code == 413
    assert f"larger than {CEILING} bytes" in response.json()["detail"]
    assert not Message.objects.exists()


def test_a_chunked_body_growing_past_the_ceiling_is_refused(web, channel):
    def chunks():
        body = hl7_of(4 * CEILING)
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = web.post(
        f"/api/v1/channels/{channel.pk}/messages/",
        content=chunks(),
        headers={"Content-Type": "application/hl7-v2"},
    )
    assert response.status_code == 413
    assert not Message.objects.exists()


def test_under_the_ceiling_the_channel_limit_answers_and_keeps_the_head(web, channel):
    response = post_inbound(web, channel, hl7_of(32 * 1024), "application/hl7-v2")
    assert response.status_code == 413
    assert "larger than 16384 bytes" in response.json()["detail"]
    assert Message.objects.get(pk=response.json()["message_id"]).status == Message.Status.ERROR
