"""Replay in the console: the buttons only for those who may press them, the replay audited and
followed on the message page, the bulk job's progress polled until done, and the edit-and-resend
editor (a PHI view, audited) for those granted it."""

from __future__ import annotations

import re

import pytest

from channels_app.models import Delivery, Message, ReplayJob
from channels_app.pipeline import replay
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in, threaded_worker, wait_for

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def failed():
    channel = factories.channel(40901, name="Lab feed")
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="EHR")
    message = Message.objects.create(
        channel=channel,
        raw=factories.adt_a01("PAGE-1", family="ABERNATHY"),
        control_id="PAGE-1",
        message_type="ADT^A01",
        status=Message.Status.PROCESSED,
        canonical={"resourceType": "Bundle", "type": "transaction", "entry": []},
    )
    Delivery.objects.create(message=message, destination=destination, status="FAILED")
    return message


def test_viewers_see_no_replay_or_resend_buttons(viewer_user, failed):
    client = signed_in(viewer_user)
    page = client.get(f"/messages/{failed.pk}/").content.decode()
    assert 'id="replay-form"' not in page and 'id="resend-open"' not in page
    assert 'id="bulk-replay"' not in client.get("/messages/").content.decode()


def test_operators_see_replay_but_not_resend_unless_granted(operator_user, resender_user, failed):
    page = signed_in(operator_user).get(f"/messages/{failed.pk}/").content.decode()
    assert 'id="replay-form"' in page and 'value="redeliver"' in page
    assert 'id="resend-open"' not in page
    assert 'id="bulk-replay"' in signed_in(operator_user).get("/messages/").content.decode()
    page = signed_in(resender_user).get(f"/messages/{failed.pk}/").content.decode()
    assert 'id="resend-open"' in page


def test_an_error_offers_only_reprocess_and_a_delivered_message_nothing(operator_user, failed):
    client = signed_in(operator_user)
    failed.deliveries.update(status="DELIVERED")
    assert 'id="replay-form"' not in client.get(f"/messages/{failed.pk}/").content.decode()
    Message.objects.filter(pk=failed.pk).update(status="ERROR")
    failed.deliveries.all().delete()
    page = client.get(f"/messages/{failed.pk}/").content.decode()
    assert 'value="reprocess"' in page and 'value="redeliver"' not in page


def test_replay_from_the_page_is_audited_and_followed_until_settled(operator_user, failed):
    client = signed_in(operator_user)
    response = client.post(f"/messages/{failed.pk}/replay/", {"mode": "redeliver"})
    assert response.status_code == 302 and response.url == f"/messages/{failed.pk}/?watch=1"
    assert failed.deliveries.get().status == "PENDING"
    event = AuditEvent.objects.get(action="message.replayed")
    assert event.target == f"message:{failed.pk}" and event.detail["replayed"] == 1
    assert event.detail["mode"] == "redeliver" and "ABERNATHY" not in str(event.detail)

    page = client.get(response.url).content.decode()
    assert "Replayed (re-deliver the same payload)." in page
    assert 'data-watching="true"' in page  # a delivery is in flight: the page follows it
    failed.deliveries.update(status="DELIVERED")
    assert 'data-watching="true"' not in client.get(response.url).content.decode()


def test_a_replay_with_nothing_to_do_says_why(operator_user, failed):
    failed.deliveries.update(status="DELIVERED")
    client = signed_in(operator_user)
    response = client.post(f"/messages/{failed.pk}/replay/", {"mode": "redeliver"}, follow=True)
    assert "Nothing replayed: not failed." in response.content.decode()


def test_bulk_replay_uses_the_filters_and_shows_the_job(operator_user, failed):
    client = signed_in(operator_user)
    Message.objects.create(channel=factories.channel(40902), raw=b"MSH|", status="ERROR")
    body = {"mode": "redeliver", "channel": str(failed.channel_id), "status": "", "q": ""}
    response = client.post("/messages/replay/", body, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    job = ReplayJob.objects.get()
    assert f'id="replay-job-{job.pk}"' in html and 'data-state="done"' in html
    assert "1 replayed" in html and shown_outcomes(html)["in_progress"] == 1
    assert "hx-trigger" in html  # done, but its message is still on its way: it polls on
    failed.deliveries.update(status="DELIVERED")
    html = client.get(f"/messages/replay/{job.pk}/", **HTMX).content.decode()
    assert shown_outcomes(html)["delivered"] == 1 and "hx-trigger" not in html  # settled
    assert job.message_ids == [failed.pk]  # the other channel's error is not selected
    event = AuditEvent.objects.get(action="messages.replayed")
    assert event.detail == {
        "mode": "redeliver",
        "filter": {"channel": str(failed.channel_id)},
        "selected": 1,
    }


@pytest.mark.django_db(transaction=True)
def test_a_running_job_polls_itself_until_a_worker_ends_it(
    operator_user, failed, monkeypatch, redis_client
):
    monkeypatch.setattr(replay, "INLINE_MAX", 0)  # one message is enough to make a job
    client = signed_in(operator_user)
    # No worker yet: the job's task waits in Redis, so the page can only show it running.
    html = client.post("/messages/replay/", {"mode": "reprocess"}, **HTMX).content.decode()
    job = ReplayJob.objects.get()
    assert 'data-state="running"' in html and 'hx-trigger="every 1s"' in html
    assert f'hx-get="/messages/replay/{job.pk}/"' in html
    with threaded_worker():
        wait_for(lambda: ReplayJob.objects.get(pk=job.pk).state == "done", what="the job's end")

        def settled():
            html = client.get(f"/messages/replay/{job.pk}/", **HTMX).content.decode()
            return "hx-trigger" not in html and html

        # The destination (port 9) still refuses: retried to the end, the message failed again.
        html = wait_for(settled, timeout=60, interval=0.5, what="the message's outcome")
    assert 'data-state="done"' in html and "1 replayed" in html
    assert shown_outcomes(html) == {"delivered": 0, "failed": 1, "errored": 0}


def shown_outcomes(html: str) -> dict[str, int]:
    """The job card's result counts, by outcome."""
    found = re.findall(r'data-outcome="(\w+)".*?class="outcome-count">(\d+)<', html, re.S)
    return {outcome: int(count) for outcome, count in found}


def test_the_resend_editor_is_a_phi_view_and_is_audited(resender_user, failed):
    client = signed_in(resender_user)
    response = client.get(f"/messages/{failed.pk}/resend/", **HTMX)
    assert response.status_code == 200
    assert "ABERNATHY^JANE^Q" in response.content.decode()  # unmasked: it is there to be edited
    event = AuditEvent.objects.get(action="phi.reveal")
    assert event.target == f"message:{failed.pk}"
    assert event.detail == {"purpose": "edit-and-resend"}


def test_resend_from_the_page(resender_user, failed):
    client = signed_in(resender_user)
    edited = replay.editable_text(failed).replace("ABERNATHY", "BARNES").replace("\n", "\r\n")
    response = client.post(f"/messages/{failed.pk}/resend/", {"raw": edited})
    copy = Message.objects.exclude(pk=failed.pk).get()
    assert response.status_code == 302 and response.url == f"/messages/{copy.pk}/?watch=1"
    assert copy.resent_from_id == failed.pk
    page = client.get(response.url).content.decode()
    assert f'href="/messages/{failed.pk}/"' in page and "by resender" in page
    event = AuditEvent.objects.get(action="message.resent")
    assert event.detail == {"original": failed.pk, "new": copy.pk}
    assert "BARNES" not in str(event.detail)


def test_an_unreadable_edit_comes_back_with_the_reason(resender_user, failed):
    client = signed_in(resender_user)
    response = client.post(f"/messages/{failed.pk}/resend/", {"raw": "PID|1||1"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="resend-error"' in html and "must start with an MSH segment" in html
    assert "PID|1||1" in html  # the edit is kept for the operator to fix
    assert Message.objects.count() == 1


def test_an_operator_without_the_permission_is_told_so(operator_user, failed):
    response = signed_in(operator_user).get(f"/messages/{failed.pk}/resend/")
    assert response.status_code == 403
    assert "needs the edit and resend permission" in response.content.decode()
    assert not AuditEvent.objects.filter(action="phi.reveal").exists()
