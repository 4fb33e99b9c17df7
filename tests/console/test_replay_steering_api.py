"""Steering a bulk replay over the API and the page: a dry run first (the same FilterSet as the
list, so it counts what the list shows), destinations and a rate, pause / resume / cancel
(audited, refused with 409 when the job is not in a state for it), per-outcome counts and the
messages by outcome, and the message timeline finding the job."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client

from channels_app.models import Delivery, Message, ReplayItem, ReplayJob
from console import timeline
from console.models import AuditEvent
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def post(client: Client, url: str, body: dict | None = None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def traffic():
    """On one channel: three messages failed at the EHR (one also at the archive), one
    delivered, one stopped by an error; on another channel, one more failed."""
    channel = factories.channel(40811, name="Lab feed")
    ehr = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="EHR")
    archive = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="Archive")
    elsewhere = factories.fhir_destination(
        factories.channel(40812), "http://127.0.0.1:9/fhir", name="Elsewhere"
    )
    made = {}
    for name, status, failed_at in [
        ("failed-1", "PROCESSED", [ehr, archive]),
        ("failed-2", "PROCESSED", [ehr]),
        ("failed-3", "PROCESSED", [ehr]),
        ("delivered", "PROCESSED", []),
        ("error", "ERROR", []),
    ]:
        message = Message.objects.create(
            channel=channel,
            raw=factories.adt_a01(name.upper()),
            control_id=name.upper(),
            status=status,
            canonical={"resourceType": "Bundle", "type": "transaction", "entry": []},
        )
        for destination in failed_at:
            Delivery.objects.create(message=message, destination=destination, status="FAILED")
        if name == "delivered":
            Delivery.objects.create(message=message, destination=ehr, status="DELIVERED")
        made[name] = message
    other = Message.objects.create(
        channel=elsewhere.channel, raw=factories.adt_a01("OTHER"), status="PROCESSED"
    )
    Delivery.objects.create(message=other, destination=elsewhere, status="FAILED")
    made.update(ehr=ehr, archive=archive, channel=channel)
    return made


def test_a_dry_run_by_filter_counts_what_the_list_shows_and_changes_nothing(operator_user, traffic):
    client = signed_in(operator_user)
    query = f"channel={traffic['channel'].pk}"
    listed = client.get(f"/api/v1/messages/?{query}").json()["count"]

    response = post(
        client, f"/api/v1/messages/replay/?{query}", {"mode": "redeliver", "dry_run": True}
    )

    assert response.status_code == 200
    preview = response.json()
    assert preview["matching"] == listed == 5  # the same FilterSet as the list
    assert preview["replay"] == 3
    assert preview["skipped"] == {"never routed: reprocess it": 1, "not failed": 1}
    assert [(d["name"], d["messages"]) for d in preview["destinations"]] == [
        ("Archive", 1),
        ("EHR", 3),
    ]
    assert not ReplayJob.objects.exists()
    assert Delivery.objects.filter(status="FAILED").count() == 5
    # The page's dry run over the same filter says the same.
    html = client.post(
        "/messages/replay/",
        {"mode": "redeliver", "dry_run": "true", "channel": traffic["channel"].pk},
        **HTMX,
    ).content.decode()
    assert '<strong class="preview-replay">3</strong>' in html
    assert "EHR (3)" in html and "Archive (1)" in html
    assert f'name="channel" value="{traffic["channel"].pk}"' in html  # Start takes the same
    assert not ReplayJob.objects.exists()


def test_a_dry_run_by_ids_with_destinations_chosen(operator_user, traffic):
    client = signed_in(operator_user)
    ids = [traffic["failed-1"].pk, traffic["failed-2"].pk, traffic["delivered"].pk, 10**12]
    body = {
        "mode": "redeliver",
        "dry_run": True,
        "ids": ids,
        "destinations": [traffic["archive"].pk],
    }

    preview = post(client, "/api/v1/messages/replay/", body).json()

    assert (preview["matching"], preview["replay"]) == (3, 1)
    assert preview["skipped"] == {
        "not found": 1,
        "nothing failed at the chosen destinations": 2,
    }
    assert [d["name"] for d in preview["destinations"]] == ["Archive"]


def test_reprocess_takes_no_destinations_and_a_rate_has_bounds(operator_user, traffic):
    client = signed_in(operator_user)
    body = {"mode": "reprocess", "destinations": [traffic["ehr"].pk]}
    response = post(client, "/api/v1/messages/replay/", body)
    assert response.status_code == 400
    assert "choose destinations with redeliver" in response.json()["destinations"][0]
    response = post(client, "/api/v1/messages/replay/", {"mode": "redeliver", "rate": 0})
    assert response.status_code == 400 and "rate" in response.json()
    assert not ReplayJob.objects.exists()


def test_a_rated_job_is_paused_resumed_and_cancelled_over_the_api(
    operator_user, traffic, redis_client
):
    """No worker here: the job waits for its task, so each move is the API's alone."""
    client = signed_in(operator_user)
    query = f"channel={traffic['channel'].pk}"
    body = {"mode": "redeliver", "destinations": [traffic["ehr"].pk], "rate": 2}
    response = post(client, f"/api/v1/messages/replay/?{query}", body)
    assert response.status_code == 202
    job = response.json()
    assert (job["state"], job["total"], job["rate"]) == ("running", 3, 2.0)
    assert job["destinations"] == [traffic["ehr"].pk]
    url = f"/api/v1/replay-jobs/{job['id']}/"

    paused = post(client, f"{url}pause/")
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    again = post(client, f"{url}pause/")
    assert again.status_code == 409 and "paused" in again.json()["detail"]
    assert post(client, f"{url}resume/").json()["state"] == "running"
    cancelled = post(client, f"{url}cancel/").json()
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"]
    assert post(client, f"{url}resume/").status_code == 409
    assert post(client, "/api/v1/replay-jobs/999999/pause/").status_code == 404

    moves = AuditEvent.objects.filter(target=f"replay-job:{job['id']}").order_by("id")
    assert [e.action for e in moves] == [
        "messages.replayed",
        "replay-job.paused",
        "replay-job.running",
        "replay-job.cancelled",
    ]
    assert moves[0].detail["rate"] == 2 and moves[0].detail["destinations"] == [traffic["ehr"].pk]
    assert moves[1].detail == {"state": "paused", "done": 0, "total": 3, "via": "api"}


def test_a_job_answers_with_counts_per_outcome_and_its_messages_by_outcome(
    operator_user, traffic, redis_client
):
    client = signed_in(operator_user)
    ids = [traffic[name].pk for name in ("failed-1", "failed-2", "failed-3", "delivered")]
    job = post(client, "/api/v1/messages/replay/", {"mode": "redeliver", "ids": ids}).json()
    # What the deliveries became (as workers would leave them): one delivered, two failed again.
    Delivery.objects.filter(message=traffic["failed-1"]).update(status="DELIVERED")
    Delivery.objects.filter(message=traffic["failed-2"]).update(status="FAILED")
    Delivery.objects.filter(message=traffic["failed-3"]).update(status="RETRY")
    url = f"/api/v1/replay-jobs/{job['id']}/"

    detail = client.get(url).json()

    assert detail["state"] == "done" and detail["replayed"] == 3
    assert detail["outcomes"] == {
        "in_progress": 0,
        "retrying": 1,
        "delivered": 1,
        "failed": 1,
        "errored": 0,
        "filtered": 0,
        "skipped": 1,
    }
    assert detail["settled"] is False
    items = client.get(f"{url}items/?outcome=failed").json()
    assert items["count"] == 1
    assert items["results"][0]["message"] == traffic["failed-2"].pk
    page = client.get(f"{url}items/?limit=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    skipped = client.get(f"{url}items/?outcome=skipped").json()["results"]
    assert skipped == [
        {
            "message": traffic["delivered"].pk,
            "outcome": "skipped",
            "detail": "not failed",
            "at": skipped[0]["at"],
        }
    ]
    assert client.get(f"{url}items/?outcome=lost").status_code == 400

    # The job page lists them by outcome, each linked to its message.
    html = client.get(f"/messages/replay/{job['id']}/?outcome=failed").content.decode()
    assert f'href="/messages/{traffic["failed-2"].pk}/"' in html
    assert f'href="/messages/{traffic["failed-1"].pk}/"' not in html


def test_the_timeline_finds_the_job_by_the_message(operator_user, traffic, redis_client):
    client = signed_in(operator_user)
    message = traffic["failed-2"]
    job = post(client, "/api/v1/messages/replay/", {"mode": "redeliver", "ids": [message.pk]})
    job_id = job.json()["id"]
    Delivery.objects.filter(message=message).update(status="DELIVERED")

    events = [e for e in timeline.of(message) if e["kind"] == "replay"]

    assert len(events) == 1 and events[0]["replay_job"] == job_id
    assert "operator" in events[0]["title"] and "delivered" in events[0]["title"]
    assert ReplayItem.objects.filter(message=message).count() == 1
    # Found by an index on the message, never by reading every job's selection.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = message.replay_items.all().explain()
    assert "Index" in plan and "replayitem" in plan, plan
    assert timeline.of(traffic["failed-3"]) and not [
        e for e in timeline.of(traffic["failed-3"]) if e["kind"] == "replay"
    ]


def test_the_page_will_not_pause_a_finished_job_and_says_why(operator_user, traffic):
    client = signed_in(operator_user)
    job = ReplayJob.objects.create(mode="redeliver", state=ReplayJob.State.DONE)
    response = client.post(f"/messages/replay/{job.pk}/pause/", follow=True)
    assert response.redirect_chain == [(f"/messages/replay/{job.pk}/", 302)]
    assert f"Replay #{job.pk} was not changed: the job is finished." in response.content.decode()
    card = client.post(f"/messages/replay/{job.pk}/cancel/", **HTMX).content.decode()
    assert 'data-state="done"' in card and "Cancel" not in card
    assert not AuditEvent.objects.filter(action__startswith="replay-job.").exists()
    assert client.post("/messages/replay/999999/resume/").status_code == 404
