"""In Chromium, under the real Content-Security-Policy: an operator opens a message whose delivery
failed, clicks Replay once the destination is fixed, and watches it get delivered; and replays
every failed message a filter matches, watching the job's progress to done."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from adapters.transports.mllp import MLLPClient
from channels_app.models import Delivery, Message, ReplayJob
from channels_app.pipeline import replay
from console.models import AuditEvent
from console.roles import Role, set_role
from tests import factories
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-oncall-password"
WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture
def refused(django_user_model, mllp_port, listener, celery_worker, fhir_sink):
    """A message the destination refused (400): its delivery FAILED at once."""
    set_role(django_user_model.objects.create_user("oncall", password=PASSWORD), Role.OPERATOR)
    channel = factories.channel(mllp_port, name="Admissions")
    factories.fhir_destination(channel, fhir_sink.url, name="EHR FHIR")
    listener(channel)
    fhir_sink.fail_next(1, 400)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("REPLAY-E2E"))
    return wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.FAILED).first(), what="refused"
    )


def test_operator_replays_a_failed_message_and_sees_it_delivered(
    page, asgi_server, refused, fhir_sink
):
    page.add_init_script(WATCH_CSP)
    page.goto(f"{asgi_server}/login/?next=/messages/{refused.message_id}/")
    page.get_by_label("Username").fill("oncall")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    card = page.locator(".card", has_text="EHR FHIR")
    expect(card).to_contain_text("Failed")
    expect(card.locator("tbody tr")).to_have_count(1)

    fhir_sink.hold_s = 1.5  # the destination is slow: the page opens before it answers
    page.get_by_label("Replay mode").select_option("redeliver")
    page.get_by_role("button", name="Replay").click()

    expect(page).to_have_url(re.compile(rf"/messages/{refused.message_id}/\?watch=1$"))
    expect(page.locator("#flash")).to_contain_text("Replayed")
    expect(page.locator("#message-page")).to_have_attribute("data-watching", "true")
    # The page follows the delivery (htmx polling) until it settles: no reload needed.
    expect(card).to_contain_text("Delivered", timeout=20_000)
    expect(card.locator("tbody tr")).to_have_count(2)  # the refused attempt is kept
    expect(page.locator("#message-page")).not_to_have_attribute("data-watching", "true")
    expect(page.locator("#replay-form")).to_have_count(0)  # nothing left to replay
    assert fhir_sink.effects == {refused.idempotency_key: 1}
    assert AuditEvent.objects.filter(action="message.replayed", actor_name="oncall").count() == 1
    assert page.evaluate("() => window.__violations") == []


def test_operator_replays_all_matching_and_watches_the_job_finish(
    page, asgi_server, django_user_model, celery_worker, fhir_sink
):
    """More than a request replays inline: the job runs in the worker, the page polls it."""
    set_role(django_user_model.objects.create_user("oncall", password=PASSWORD), Role.OPERATOR)
    channel = factories.channel(40950, name="Results")
    destination = factories.fhir_destination(channel, fhir_sink.url, name="EHR FHIR")
    count = replay.INLINE_MAX + 50
    messages = Message.objects.bulk_create(
        Message(
            channel=channel,
            raw=factories.oru_r01(f"BULK-E2E-{i}"),
            control_id=f"BULK-E2E-{i}",
            status=Message.Status.PROCESSED,
            canonical={"resourceType": "Bundle", "type": "transaction", "entry": []},
            received_at=timezone.now(),
        )
        for i in range(count)
    )
    Delivery.objects.bulk_create(
        Delivery(message=m, destination=destination, status=Delivery.Status.FAILED)
        for m in messages
    )
    page.add_init_script(WATCH_CSP)
    page.goto(f"{asgi_server}/login/?next=/messages/")
    page.get_by_label("Username").fill("oncall")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Channel").select_option(label="Results")
    expect(page).to_have_url(re.compile(rf"channel={channel.pk}"))

    page.get_by_label("Bulk replay mode").select_option("redeliver")
    page.get_by_role("button", name="Replay all matching").click()
    expect(page.locator(".replay-preview")).to_contain_text(f"{count} would be replayed")
    page.get_by_role("button", name=f"Start replay of {count}").click()

    job = page.locator(".replay-job")
    expect(job).to_contain_text(f"of {count} messages")
    expect(job).to_have_attribute("data-state", "done", timeout=30_000)
    expect(job).to_contain_text(f"{count} replayed")
    wait_for(
        lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == count,
        timeout=30,
        what="every replayed delivery delivered",
    )
    event = AuditEvent.objects.get(action="messages.replayed")
    assert event.detail["filter"] == {"channel": str(channel.pk)}
    assert event.detail["selected"] == count
    assert page.evaluate("() => window.__violations") == []


def failed_to(destination, count: int, prefix: str) -> list[Message]:
    messages = Message.objects.bulk_create(
        Message(
            channel=destination.channel,
            raw=factories.oru_r01(f"{prefix}-{i}"),
            control_id=f"{prefix}-{i}",
            status=Message.Status.PROCESSED,
            canonical={"resourceType": "Bundle", "type": "transaction", "entry": []},
            received_at=timezone.now(),
        )
        for i in range(count)
    )
    Delivery.objects.bulk_create(
        Delivery(message=m, destination=destination, status=Delivery.Status.FAILED)
        for m in messages
    )
    return messages


def test_operator_counts_first_then_steers_a_rated_replay(
    page, asgi_server, django_user_model, celery_worker, fhir_sink
):
    """Filter, dry run (nothing runs yet), start at 4 messages/s, pause (progress stops), resume
    (it goes on), cancel (it stops for good), and read what became of each message."""
    set_role(django_user_model.objects.create_user("oncall", password=PASSWORD), Role.OPERATOR)
    channel = factories.channel(40951, name="Steered")
    destination = factories.fhir_destination(channel, fhir_sink.url, name="EHR FHIR")
    failed_to(destination, 40, "STEER")
    other = factories.fhir_destination(factories.channel(40952), fhir_sink.url, name="Other")
    failed_to(other, 3, "NOT-SELECTED")
    page.add_init_script(WATCH_CSP)
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel replay #...?"
    page.goto(f"{asgi_server}/login/?next=/messages/")
    page.get_by_label("Username").fill("oncall")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Channel").select_option(label="Steered")
    expect(page).to_have_url(re.compile(rf"channel={channel.pk}"))

    page.get_by_label("Bulk replay mode").select_option("redeliver")
    page.get_by_label("Rate (messages per second)").fill("4")
    page.get_by_role("button", name="Replay all matching").click()
    preview = page.locator(".replay-preview")
    expect(preview).to_contain_text("Dry run: nothing has been replayed yet")
    expect(preview.locator(".preview-replay")).to_have_text("40")
    expect(preview).to_contain_text("EHR FHIR (40)")
    assert not ReplayJob.objects.exists()

    preview.get_by_role("button", name="Start replay of 40").click()
    job = page.locator(".replay-job")
    expect(job).to_have_attribute("data-state", "running")
    expect(job).to_contain_text("at 4 messages/s")
    expect(job).to_have_attribute("data-done", re.compile(r"^([4-9]|[1-3]\d)$"), timeout=20_000)

    job.get_by_role("button", name="Pause").click()
    expect(job).to_have_attribute("data-state", "paused")
    stopped_at = ReplayJob.objects.get().done
    page.wait_for_timeout(2500)  # two steps' time: nothing moves
    expect(job).to_have_attribute("data-done", str(stopped_at))
    assert ReplayJob.objects.get().done == stopped_at

    job.get_by_role("button", name="Resume").click()
    expect(job).to_have_attribute("data-state", "running")
    wait_for(lambda: ReplayJob.objects.get().done > stopped_at, timeout=20, what="progress")

    job.get_by_role("button", name="Cancel").click()
    expect(job).to_have_attribute("data-state", "cancelled")
    expect(job.get_by_role("button", name="Resume")).to_have_count(0)
    cancelled_at = ReplayJob.objects.get().done
    assert stopped_at < cancelled_at < 40
    # What it took is delivered (the sink is up), counted per message; the card stops polling.
    delivered = job.locator('[data-outcome="delivered"] .outcome-count')
    expect(delivered).to_have_text(str(cancelled_at), timeout=30_000)
    expect(job).not_to_have_attribute("hx-trigger", re.compile("every"))
    page.wait_for_timeout(1500)
    assert ReplayJob.objects.get().done == cancelled_at  # cancelled for good
    assert len(fhir_sink.effects) == cancelled_at

    job.locator('[data-outcome="delivered"] a').click()
    expect(page).to_have_url(re.compile(r"/messages/replay/\d+/\?outcome=delivered$"))
    expect(page.locator(".replay-items tbody tr")).to_have_count(cancelled_at)
    expect(page.locator(".replay-items")).to_contain_text("STEER-0")
    moves = AuditEvent.objects.filter(action__startswith="replay-job.").order_by("id")
    assert [e.action for e in moves] == [
        "replay-job.paused",
        "replay-job.running",
        "replay-job.cancelled",
    ]
    assert page.evaluate("() => window.__violations") == []
