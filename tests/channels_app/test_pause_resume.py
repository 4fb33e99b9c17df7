"""Pause and resume: messages keep being received and ACKed while their deliveries wait QUEUED;
nothing reaches the destination until it is resumed, then everything arrives exactly once."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from channels_app.models import Attempt, Delivery, Destination, Message
from channels_app.pipeline import control, deliver, process, sweep
from console.models import AuditEvent
from tests import factories
from tests.support import FhirSink, send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def statuses() -> list[str]:
    return sorted(Delivery.objects.values_list("status", flat=True))


def send_all(port: int, prefix: str, n: int) -> None:
    for i in range(n):
        ack = send(port, factories.adt_a01(f"{prefix}-{i}"))
        assert b"MSA|AA" in ack, ack  # received and acknowledged, paused or not


def test_nothing_is_sent_while_paused_and_everything_once_after_resume(hub, mllp_port, fhir_sink):
    destination = hub.destinations.get()
    control.pause(destination)
    send_all(mllp_port, "PAUSED", 5)
    wait_for(lambda: statuses() == ["QUEUED"] * 5, what="five deliveries queued")
    time.sleep(0.5)
    assert fhir_sink.requests == [] and Attempt.objects.count() == 0
    assert control.destination_health(destination)["queue"]["queued"] == 5

    released = control.resume(destination)

    assert len(released) == 5
    wait_for(lambda: statuses() == ["DELIVERED"] * 5, what="all delivered after resume")
    time.sleep(0.5)  # a duplicate send, if any, would land now
    assert len(fhir_sink.requests) == 5 and set(fhir_sink.effects.values()) == {1}
    assert len(fhir_sink.effects) == 5


def test_pausing_a_channel_holds_every_destination_of_it(hub, mllp_port, fhir_sink):
    second = FhirSink().start()
    try:
        factories.fhir_destination(hub, second.url, name="second sink")
        control.pause(hub)
        send_all(mllp_port, "CHAN", 3)
        wait_for(lambda: statuses() == ["QUEUED"] * 6, what="six deliveries queued")
        assert fhir_sink.requests == [] and second.requests == []

        control.resume(hub)

        wait_for(lambda: statuses() == ["DELIVERED"] * 6, what="all delivered after resume")
        assert len(fhir_sink.effects) == len(second.effects) == 3
        assert len(fhir_sink.requests) == len(second.requests) == 3
    finally:
        second.stop()


def test_deliveries_already_due_are_held_by_the_claim_without_an_attempt(fhir_sink):
    channel = factories.channel(40140)
    destination = factories.fhir_destination(channel, fhir_sink.url)
    messages = [
        Message.objects.create(channel=channel, raw=factories.adt_a01(f"DUE-{i}")).id
        for i in range(3)
    ]
    ids = process.process_messages(messages)  # routed before the pause: PENDING
    control.pause(destination)

    batch = deliver.deliver(ids)

    assert [o.status for o in batch.outcomes] == ["QUEUED"] * 3
    assert fhir_sink.requests == []
    assert set(Delivery.objects.values_list("attempt_count", flat=True)) == {0}
    control.pause(channel)
    control.resume(destination)  # the channel is still paused: nothing is released
    assert statuses() == ["QUEUED"] * 3
    assert sorted(control.resume(channel)) == sorted(ids)
    assert [o.status for o in deliver.deliver(ids).outcomes] == ["DELIVERED"] * 3


# --- The console: operators pause and resume, viewers only look; every change is audited.


@pytest.fixture
def destination():
    channel = factories.channel(40141)
    return factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")


def post(user, url: str, **headers):
    client = Client()
    client.force_login(user)
    return client.post(url, **headers)


def test_a_viewer_cannot_pause(viewer_user, destination):
    response = post(viewer_user, f"/destinations/{destination.pk}/pause/")
    assert response.status_code == 403
    destination.refresh_from_db()
    assert not destination.paused
    assert not AuditEvent.objects.filter(action__startswith="destination.").exists()


def test_an_operator_pauses_and_resumes_and_both_are_audited(operator_user, destination):
    response = post(operator_user, f"/destinations/{destination.pk}/pause/")
    assert response.status_code == 302 and response.url == "/channels/"
    destination.refresh_from_db()
    assert destination.paused

    response = post(
        operator_user, f"/destinations/{destination.pk}/resume/", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        f'id="channel-{destination.channel_id}"' in html
        and 'data-action="pause-destination"' in html
    )
    destination.refresh_from_db()
    assert not destination.paused

    changes = AuditEvent.objects.filter(action__startswith="destination.").order_by("id")
    events = list(changes.values_list("action", "target", "actor_name"))
    assert events == [
        ("destination.paused", f"destination:{destination.pk}", "operator"),
        ("destination.resumed", f"destination:{destination.pk}", "operator"),
    ]
    assert AuditEvent.objects.get(action="destination.resumed").detail["released"] == 0


def test_an_operator_pauses_a_whole_channel(operator_user, destination):
    channel = destination.channel
    assert post(operator_user, f"/channels/{channel.pk}/pause/").status_code == 302
    channel.refresh_from_db()
    assert channel.paused
    event = AuditEvent.objects.get(action__startswith="channel.")
    assert (event.action, event.target) == ("channel.paused", f"channel:{channel.pk}")


def test_the_channels_page_shows_breaker_pause_and_queue(viewer_user, operator_user, destination):
    Destination.objects.filter(pk=destination.pk).update(paused=True, breaker_state="open")
    client = Client()
    client.force_login(viewer_user)
    html = client.get("/channels/").content.decode()
    row = (
        f'id="destination-{destination.pk}" data-breaker="open" data-paused="true" data-queued="0"'
    )
    assert row in html
    assert 'data-action="resume-destination"' not in html  # a viewer gets no buttons
    client.force_login(operator_user)
    assert 'data-action="resume-destination"' in client.get("/channels/").content.decode()


def test_the_sweeper_releases_what_a_lost_resume_left_queued(fhir_sink):
    """The resume's enqueue was lost (worker died, Redis flushed): the sweeper sends them."""
    channel = factories.channel(40142)
    destination = factories.fhir_destination(channel, fhir_sink.url)
    control.pause(destination)
    messages = [
        Message.objects.create(channel=channel, raw=factories.adt_a01(f"LOST-{i}")).id
        for i in range(3)
    ]
    assert process.process_messages(messages) == []  # created QUEUED, nothing to enqueue
    assert sweep.sweep().delivery_ids == []  # still paused: still held
    Destination.objects.filter(pk=destination.pk).update(paused=False)  # resumed, nothing sent

    swept = sweep.sweep()

    assert len(swept.delivery_ids) == 3 and statuses() == ["PENDING"] * 3
    assert [o.status for o in deliver.deliver(swept.delivery_ids).outcomes] == ["DELIVERED"] * 3
