"""Retention: bodies older than a channel's retention_days are pruned, metadata kept, only once
the message's work is over, and each run that pruned something is audited per channel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from channels_app import retention, tasks
from channels_app.models import DedupeEntry, Delivery, Message, MessageKey
from channels_app.sealing import unseal
from console.models import AuditEvent
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db

OLD = timedelta(days=40)


@pytest.fixture
def traffic():
    """A channel keeping 30 days, with old and new messages in every state; another keeping all."""
    now = timezone.now()
    kept = factories.channel(40301, retention_days=30)
    forever = factories.channel(40302)
    destination = factories.fhir_destination(kept, "http://fhir.example/fhir")

    def message(channel, age, status, *deliveries, control_id):
        m = Message.objects.create(
            channel=channel,
            received_at=now - age,
            status=status,
            control_id=control_id,
            message_type="ADT^A01",
            raw=factories.adt_a01(control_id),
            size=123,
            canonical={"resourceType": "Bundle"} if status != Message.Status.RECEIVED else None,
        )
        for state in deliveries:
            Delivery.objects.create(message=m, destination=destination, status=state)
        return m

    S, D = Message.Status, Delivery.Status
    return {
        "delivered": message(kept, OLD, S.PROCESSED, D.DELIVERED, control_id="OLD-DELIVERED"),
        "failed": message(kept, OLD, S.PROCESSED, D.FAILED, control_id="OLD-FAILED"),
        "filtered": message(kept, OLD, S.FILTERED, control_id="OLD-FILTERED"),
        "retrying": message(kept, OLD, S.PROCESSED, D.RETRY, control_id="OLD-RETRY"),
        "queued": message(kept, OLD, S.PROCESSED, D.QUEUED, control_id="OLD-QUEUED"),
        "unprocessed": message(kept, OLD, S.RECEIVED, control_id="OLD-RECEIVED"),
        "recent": message(kept, timedelta(days=2), S.PROCESSED, D.DELIVERED, control_id="NEW"),
        "forever": message(forever, OLD * 10, S.PROCESSED, control_id="FOREVER"),
        "channel": kept,
    }


def test_only_old_closed_messages_lose_their_bodies(traffic):
    tasks.prune_bodies()
    pruned = {k for k, m in traffic.items() if k != "channel" and _reload(m).pruned_at}
    assert pruned == {"delivered", "failed", "filtered"}
    for key in ("delivered", "failed", "filtered"):
        m = _reload(traffic[key])
        assert unseal(m.raw) == b"" and m.canonical is None and m.canonical_sealed is None
        # Metadata, status and deliveries stay.
        assert m.control_id == f"OLD-{key.upper()}" and m.size == 123 and m.message_type
    assert _reload(traffic["delivered"]).deliveries.get().status == Delivery.Status.DELIVERED
    for key in ("retrying", "queued", "unprocessed", "recent", "forever"):
        m = _reload(traffic[key])
        assert m.raw_text.startswith("MSH|") and m.pruned_at is None


def test_a_pruned_message_loses_its_search_keys_and_a_deleted_one_takes_them(traffic):
    # Keys have no constraint in the database (a check per key cost the pipeline): what removes
    # a message's body or the message must remove its keys.
    for m in (traffic["delivered"], traffic["recent"], traffic["forever"]):
        MessageKey.objects.create(message=m, kind="family", value="Doe", normalised="doe")
    tasks.prune_bodies()
    assert not MessageKey.objects.filter(message=traffic["delivered"]).exists()
    assert MessageKey.objects.filter(message=traffic["recent"]).exists()
    traffic["recent"].delete()
    assert set(MessageKey.objects.values_list("message", flat=True)) == {traffic["forever"].pk}


def test_each_run_that_prunes_writes_one_audit_entry_per_channel(traffic):
    retention.prune(batch=2)  # several batches, still one entry
    [event] = AuditEvent.objects.filter(action="retention.pruned")
    channel = traffic["channel"]
    assert event.target == f"channel:{channel.pk}" and event.actor_name == "system:retention"
    assert event.actor is None and event.detail["count"] == 3
    assert event.detail["before"].startswith(str((timezone.now() - timedelta(days=30)).date()))
    retention.prune()  # nothing left to prune: nothing to audit
    assert AuditEvent.objects.filter(action="retention.pruned").count() == 1


def test_a_delivery_that_closes_later_lets_its_message_go_next_time(traffic):
    retention.prune()
    Delivery.objects.filter(message=traffic["retrying"]).update(status=Delivery.Status.DELIVERED)
    assert retention.prune() == {traffic["channel"].pk: 1}
    assert _reload(traffic["retrying"]).pruned_at is not None


def test_the_message_page_says_the_body_was_pruned(traffic, client):
    retention.prune()
    client.force_login(factories.user("op-ret", Role.OPERATOR))
    html = client.post(f"/messages/{traffic['delivered'].pk}/reveal/").content.decode()
    assert "Body pruned on" in html and "OLD-DELIVERED" in html


def test_dedupe_entries_past_their_window_are_forgotten_but_duplicates_still_add_up():
    now = timezone.now()
    hourly = factories.channel(40303, dedupe_window_s=3600)

    def entry(key, age, duplicates=0, channel_id=hourly.pk):
        return DedupeEntry.objects.create(
            channel_id=channel_id, key=key, seen_at=now - age, duplicates=duplicates
        )

    entry("EXPIRED", timedelta(hours=2))
    entry("EXPIRED-WITH-REPEATS", timedelta(hours=2), duplicates=3)
    entry("IN-WINDOW", timedelta(minutes=30))
    entry("CHANNEL-GONE", timedelta(minutes=1), channel_id=hourly.pk + 1000)
    assert retention.forget_expired_keys(now, batch=1) == 2  # batch=1: several commits
    assert set(DedupeEntry.objects.values_list("key", flat=True)) == {
        "EXPIRED-WITH-REPEATS",
        "IN-WINDOW",
    }
    tasks.prune_bodies()  # beat's run does the same; nothing else expired meanwhile
    assert DedupeEntry.objects.count() == 2


def test_beat_runs_the_pruning():
    entry = next(
        e
        for e in settings.CELERY_BEAT_SCHEDULE.values()
        if e["task"] == "channels_app.tasks.prune_bodies"
    )
    assert entry["schedule"] > 0


def _reload(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)
