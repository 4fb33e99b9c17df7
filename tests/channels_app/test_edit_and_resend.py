"""Edit and resend: the edit becomes a new message on the same channel, linked to the original
(never changed), and goes through the normal pipeline; an edit that cannot be read is refused
with the reason and nothing is stored."""

from __future__ import annotations

import json

import pytest

from adapters.transports.mllp import MLLPClient
from channels_app.models import Delivery, Message
from channels_app.pipeline import replay
from channels_app.sealing import unseal
from tests import factories
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_edit_is_a_new_linked_message_delivered_through_the_pipeline(
    mllp_port, listener, celery_worker, fhir_sink, operator_user
):
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, fhir_sink.url)
    listener(channel)
    fhir_sink.fail_next(1, 400)  # the receiver refuses the message as sent
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("EDIT-1", family="WRONGNAME"))
    failed = wait_for(lambda: Delivery.objects.filter(status="FAILED").first(), what="refused")
    original = failed.message
    before = unseal(original.raw)

    # As the console's textarea sends it: one segment per line, CRLF line ends.
    edited = replay.editable_text(original).replace("WRONGNAME", "RIGHTNAME").replace("\n", "\r\n")
    copy = replay.edit_and_resend(original.pk, edited, operator_user, remote_addr="10.0.0.7")

    assert copy.pk != original.pk and copy.channel_id == channel.pk
    assert copy.resent_from_id == original.pk and copy.resent_by_id == operator_user.pk
    assert copy.control_id == "EDIT-1" and copy.message_type == "ADT^A01"
    assert b"\n" not in unseal(copy.raw) and unseal(copy.raw).count(b"\r") == 4
    wait_for(
        lambda: Delivery.objects.filter(message=copy, status="DELIVERED").exists(),
        what="the edited copy delivered",
    )
    [bundle] = fhir_sink.bundles()
    assert "RIGHTNAME" in json.dumps(bundle) and "WRONGNAME" not in json.dumps(bundle)
    original.refresh_from_db()
    assert unseal(original.raw) == before and original.status == Message.Status.PROCESSED
    assert list(original.deliveries.values_list("status", flat=True)) == ["FAILED"]
    assert list(original.resent_as.all()) == [copy]


def test_an_edit_that_cannot_be_read_is_refused_with_its_reason(db):
    channel = factories.channel(40701)
    original = Message.objects.create(channel=channel, raw=factories.adt_a01("BAD-EDIT"))

    with pytest.raises(replay.ResendRefused, match="must start with an MSH segment"):
        replay.edit_and_resend(original.pk, "PID|1||123\r\nPV1|1|I")
    with pytest.raises(replay.ResendRefused, match="MSH-9"):
        replay.edit_and_resend(original.pk, "MSH|^~\\&|A|B|C|D|20240101||")
    with pytest.raises(replay.ResendRefused, match="empty"):
        replay.edit_and_resend(original.pk, "  \r\n ")
    assert Message.objects.count() == 1


def test_an_edit_larger_than_the_channel_takes_is_refused(db):
    channel = factories.channel(40702, max_message_bytes=300)
    original = Message.objects.create(channel=channel, raw=factories.adt_a01("BIG-EDIT"))
    padded = replay.editable_text(original) + "\nNTE|1||" + "x" * 400

    with pytest.raises(replay.ResendRefused, match="at most 300"):
        replay.edit_and_resend(original.pk, padded)
    assert Message.objects.count() == 1
