"""The replay API: operators replay (one, by ids, by filter) and poll a job; edit-and-resend is
its own permission; every replay and resend is audited with ids and counts, never a body."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from channels_app.models import Delivery, Message
from channels_app.pipeline import replay
from channels_app.sealing import unseal
from console.models import AuditEvent
from console.roles import RESEND_EDITED, grant
from tests import factories
from tests.support import signed_in, threaded_worker, wait_for

pytestmark = pytest.mark.django_db


def post(client: Client, url: str, body: dict):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def traffic():
    """Two messages whose delivery failed, one delivered, one stopped by an error."""
    channel = factories.channel(40801)
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    made = {}
    for name, status, delivery in [
        ("failed-1", "PROCESSED", "FAILED"),
        ("failed-2", "PROCESSED", "FAILED"),
        ("delivered", "PROCESSED", "DELIVERED"),
        ("error", "ERROR", None),
    ]:
        message = Message.objects.create(
            channel=channel,
            raw=factories.adt_a01(name.upper(), family="KOWALCZYK"),
            control_id=name.upper(),
            status=status,
            canonical={"resourceType": "Bundle", "type": "transaction", "entry": []},
        )
        if delivery:
            Delivery.objects.create(message=message, destination=destination, status=delivery)
        made[name] = message
    return made


def test_viewers_cannot_replay_and_nothing_changes(viewer_user, traffic):
    client = signed_in(viewer_user)
    failed = traffic["failed-1"]
    response = post(client, f"/api/v1/messages/{failed.pk}/replay/", {"mode": "redeliver"})
    assert response.status_code == 403
    assert post(client, "/api/v1/messages/replay/", {"mode": "redeliver"}).status_code == 403
    assert client.get("/api/v1/replay-jobs/").status_code == 403
    assert Delivery.objects.filter(status="FAILED").count() == 2
    assert not AuditEvent.objects.filter(action__contains="replayed").exists()


def test_an_operator_replays_one_message_and_it_is_audited(operator_user, traffic):
    client = signed_in(operator_user)
    failed = traffic["failed-1"]
    response = post(client, f"/api/v1/messages/{failed.pk}/replay/", {"mode": "redeliver"})
    assert response.status_code == 200
    assert response.json() == {"mode": "redeliver", "replayed": 1, "skipped": {}}
    assert failed.deliveries.get().status == "PENDING"

    fine = traffic["delivered"]
    response = post(client, f"/api/v1/messages/{fine.pk}/replay/", {"mode": "redeliver"})
    assert response.json() == {"mode": "redeliver", "replayed": 0, "skipped": {"not failed": 1}}

    events = list(AuditEvent.objects.filter(action="message.replayed").order_by("id"))
    assert [e.target for e in events] == [f"message:{failed.pk}", f"message:{fine.pk}"]
    assert events[0].actor_name == "operator" and events[0].detail["mode"] == "redeliver"
    assert events[0].detail["replayed"] == 1 and events[0].ip == "127.0.0.1"
    assert "KOWALCZYK" not in json.dumps([e.detail for e in events])


def test_a_bad_mode_or_a_missing_message_is_a_clear_refusal(operator_user, traffic):
    client = signed_in(operator_user)
    failed = traffic["failed-1"]
    response = post(client, f"/api/v1/messages/{failed.pk}/replay/", {"mode": "resend"})
    assert response.status_code == 400 and "mode" in response.json()
    response = post(client, "/api/v1/messages/99999999/replay/", {"mode": "redeliver"})
    assert response.status_code == 404


def test_bulk_replay_by_filter_takes_only_what_failed(operator_user, traffic):
    client = signed_in(operator_user)
    channel = traffic["failed-1"].channel_id
    url = f"/api/v1/messages/replay/?channel={channel}&status=PROCESSED"  # the list's filters
    response = post(client, url, {"mode": "redeliver"})
    assert response.status_code == 200  # small: done in the request
    job = response.json()
    assert (job["state"], job["total"], job["done"], job["replayed"]) == ("done", 2, 2, 2)
    assert job["selection"] == {"filter": {"channel": str(channel), "status": "PROCESSED"}}
    assert response["Location"] == f"/api/v1/replay-jobs/{job['id']}/"

    polled = client.get(f"/api/v1/replay-jobs/{job['id']}/").json()
    assert polled["percent"] == 100 and polled["created_by"] == "operator"
    event = AuditEvent.objects.get(action="messages.replayed")
    assert event.target == f"replay-job:{job['id']}"
    assert event.detail["selected"] == 2 and event.detail["filter"]["channel"] == str(channel)


def test_bulk_replay_by_ids_says_why_each_was_skipped(operator_user, traffic):
    client = signed_in(operator_user)
    ids = [traffic["failed-2"].pk, traffic["delivered"].pk, traffic["error"].pk]
    response = post(client, "/api/v1/messages/replay/", {"mode": "reprocess", "ids": ids})
    job = response.json()
    assert (job["replayed"], job["skipped"]) == (2, {"not failed": 1})
    assert Message.objects.get(pk=traffic["error"].pk).status == "RECEIVED"
    detail = AuditEvent.objects.get(action="messages.replayed").detail
    assert detail["ids"] == 3 and detail["message_ids"] == sorted(ids)
    assert job["selection"] == {"ids": 3, "message_ids": sorted(ids)}


def test_ids_and_filters_together_are_refused(operator_user, traffic):
    client = signed_in(operator_user)
    body = {"mode": "redeliver", "ids": [traffic["failed-1"].pk]}
    response = post(client, "/api/v1/messages/replay/?status=PROCESSED", body)
    assert response.status_code == 400 and "not both" in json.dumps(response.json())
    assert not AuditEvent.objects.filter(action__contains="replayed").exists()


@pytest.mark.django_db(transaction=True)
def test_a_large_bulk_replay_answers_202_with_a_job_a_worker_runs(
    operator_user, traffic, monkeypatch, redis_client
):
    monkeypatch.setattr(replay, "INLINE_MAX", 1)  # two messages are enough to make a job
    client = signed_in(operator_user)
    # No worker yet: the job's task waits in Redis, so the answer can only say it is running.
    response = post(client, "/api/v1/messages/replay/", {"mode": "redeliver"})
    assert response.status_code == 202
    job = response.json()
    assert (job["state"], job["total"], job["done"]) == ("running", 2, 0)
    assert response["Location"] == f"/api/v1/replay-jobs/{job['id']}/"

    def finished():
        polled = client.get(response["Location"]).json()
        return polled if polled["state"] == "done" else None

    with threaded_worker():
        polled = wait_for(finished, what="the worker to run the job")
    assert (polled["total"], polled["done"], polled["replayed"]) == (2, 2, 2)


def test_edit_and_resend_needs_its_own_permission(operator_user, traffic):
    client = signed_in(operator_user)
    original = traffic["failed-1"]
    edited = factories.adt_a01("FAILED-1", family="NOWAK").decode()
    response = post(client, f"/api/v1/messages/{original.pk}/resend/", {"raw": edited})
    assert response.status_code == 403
    assert "permission" in response.json()["detail"]

    grant(operator_user, RESEND_EDITED)
    response = post(client, f"/api/v1/messages/{original.pk}/resend/", {"raw": edited})
    assert response.status_code == 201
    copy = Message.objects.get(pk=response.json()["message"])
    assert copy.resent_from_id == original.pk and copy.status == "RECEIVED"
    assert b"NOWAK" in unseal(copy.raw) and b"KOWALCZYK" in unseal(original.raw)
    event = AuditEvent.objects.get(action="message.resent")
    assert event.detail == {"original": original.pk, "new": copy.pk, "via": "api"}
    assert event.actor_name == "operator"


def test_admins_hold_the_permission_without_a_grant(hub_admin_user, traffic):
    client = signed_in(hub_admin_user)
    original = traffic["error"]
    edited = factories.adt_a01("ERROR", family="NOWAK").decode()
    response = post(client, f"/api/v1/messages/{original.pk}/resend/", {"raw": edited})
    assert response.status_code == 201


def test_a_granted_viewer_still_cannot_resend(viewer_user, traffic):
    """The permission is for operators and above: a grant does not lift a lower role."""
    grant(viewer_user, RESEND_EDITED)
    client = signed_in(viewer_user)
    edited = factories.adt_a01("X").decode()
    url = f"/api/v1/messages/{traffic['error'].pk}/resend/"
    response = post(client, url, {"raw": edited})
    assert response.status_code == 403 and "operator role" in response.json()["detail"]


def test_an_unreadable_edit_is_refused_with_the_reason_and_not_stored(resender_user, traffic):
    client = signed_in(resender_user)
    original = traffic["failed-1"]
    url = f"/api/v1/messages/{original.pk}/resend/"
    response = post(client, url, {"raw": "PID|1||123\nPV1|1|I"})
    assert response.status_code == 400
    assert "must start with an MSH segment" in response.json()["raw"][0]
    assert Message.objects.count() == 4 and not AuditEvent.objects.filter(action="message.resent")
