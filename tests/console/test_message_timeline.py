"""With a real listener, worker and a destination that refuses: the message's status says it
failed (not "Routed"), beside each destination's state, and its timeline tells the whole story,
replays and edited copies included, on the page and in the API."""

from __future__ import annotations

import json

import pytest

from adapters.transports.mllp import MLLPClient
from channels_app.models import Delivery, Message
from console.roles import RESEND_EDITED, grant
from tests import factories
from tests.support import PatientNamingSink, signed_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def billing():
    """A FHIR server that refuses every patient, naming them (400)."""
    sink = PatientNamingSink(refuse_every=1).start()
    yield sink
    sink.stop()


@pytest.fixture
def refused(mllp_port, listener, celery_worker, fhir_sink, billing):
    """Two destinations: one takes the message, the other refuses it for good (400)."""
    channel = factories.channel(mllp_port, name="Admissions")
    factories.fhir_destination(channel, fhir_sink.url, name="EHR")
    factories.fhir_destination(channel, billing.url, name="Billing", max_attempts=1)
    listener(channel)
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("TRUTH-1", family="WOJCIECHOWSKA", mrn="MRN-7"))

    def settled():
        states = set(Delivery.objects.values_list("status", flat=True))
        return len(Delivery.objects.all()) == 2 and states <= {"DELIVERED", "FAILED"}

    wait_for(settled, what="both deliveries settled")
    return Message.objects.get(control_id="TRUTH-1")


def test_a_failed_delivery_is_not_routed(operator_user, refused):
    client = signed_in(operator_user)
    api = client.get("/api/v1/messages/", {"q": "MRN-7"}).json()["results"]
    assert [m["outcome"] for m in api] == ["PARTLY_DELIVERED"]
    states = {d["destination_name"]: d["status"] for d in api[0]["destinations"]}
    assert states == {"EHR": "DELIVERED", "Billing": "FAILED"}
    assert client.get(f"/api/v1/messages/{refused.pk}/").json()["outcome_label"] == (
        "Partly delivered"
    )
    page = client.get(f"/messages/{refused.pk}/").content.decode()
    assert 'data-outcome="PARTLY_DELIVERED"' in page and ">Routed<" not in page
    assert [m.pk for m in client.get("/messages/", {"status": "FAILED"}).context["rows"]] == []
    rows = client.get("/messages/", {"delivery": "failed"}).context["rows"]
    assert [m.pk for m in rows] == [refused.pk]


def test_the_timeline_tells_what_happened_and_links_replays_and_copies(
    operator_user, refused, billing
):
    grant(operator_user, RESEND_EDITED)
    client = signed_in(operator_user)
    billing.refuse_every = 0  # Billing takes it now
    replayed = client.post(
        f"/api/v1/messages/{refused.pk}/replay/",
        json.dumps({"mode": "redeliver"}),
        content_type="application/json",
    )
    assert replayed.json()["replayed"] == 1
    wait_for(lambda: not Delivery.objects.exclude(status="DELIVERED").exists(), what="redelivered")
    copy = client.post(
        f"/api/v1/messages/{refused.pk}/resend/",
        json.dumps({"raw": refused.raw_text.replace("TRUTH-1", "TRUTH-2")}),
        content_type="application/json",
    ).json()["message"]

    events = client.get(f"/api/v1/messages/{refused.pk}/timeline/").json()
    kinds = [e["kind"] for e in events]
    assert kinds[:2] == ["received", "processed"]
    assert "127.0.0.1" in events[0]["title"] and "Admissions" in events[0]["title"]
    assert "channel version" in events[1]["detail"] or "ms after receipt" in events[1]["detail"]
    routed = [e["title"] for e in events if e["kind"] == "routing"]
    assert sorted(routed) == ["Routed to Billing", "Routed to EHR"]
    attempts = [e["title"] for e in events if e["kind"] == "attempt"]
    assert any("Billing: Failed permanently (400)" in a for a in attempts)
    assert any("Billing: Delivered" in a for a in attempts)
    assert kinds.count("delivered") == 2  # both, in the end
    replay = next(e for e in events if e["kind"] == "replay")
    assert "operator" in replay["title"] and "re-deliver" in replay["title"]
    resent = next(e for e in events if e["kind"] == "resent_as")
    assert resent["message"] == copy
    assert "WOJCIECHOWSKA" not in json.dumps(events)  # what Billing said is masked

    back = client.get(f"/api/v1/messages/{copy}/timeline/").json()
    assert any(e["kind"] == "resent_from" and e["message"] == refused.pk for e in back)

    page = client.get(f"/messages/{refused.pk}/").content.decode()
    assert 'id="timeline"' in page and f'href="/messages/{copy}/"' in page
