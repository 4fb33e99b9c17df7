"""What a viewer reads around a message carries no PHI either: the value a conversion issue
quotes, what a destination's OperationOutcome says about the patient, the patient identifier
that keys an ordered lane."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from channels_app.models import Attempt, Delivery, Message
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

NAME, MRN = "KOWALCZYK", "MRN-777123"


@pytest.fixture
def delivery():
    channel = factories.channel(40601)
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    message = Message.objects.create(
        channel=channel,
        raw=factories.adt_a01("MASK-1", family=NAME, mrn=MRN),
        status=Message.Status.PROCESSED,
        issues=[
            {
                "segment": "PID",
                "field": "PID-7",
                "value": "19XX0101",
                "target": "Patient.birthDate",
                "reason": f"'{NAME}' has no valid birth date",
                "origin": "sender",
                "severity": "warning",
            }
        ],
    )
    delivery = Delivery.objects.create(
        message=message, destination=destination, ordering_key=MRN, status="FAILED"
    )
    Attempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        duration_ms=3.0,
        outcome=Attempt.Outcome.PERMANENT,
        status_code=422,
        issues=[
            {"severity": "error", "code": "invariant", "diagnostics": f"name '{NAME}' refused"}
        ],
    )
    return delivery


def test_a_viewer_reads_issues_attempts_and_lanes_without_phi(viewer_user, delivery):
    client = signed_in(viewer_user)
    body = client.get(f"/api/v1/messages/{delivery.message_id}/body/").json()
    issue = body["issues"][0]
    assert issue["value"] == "***" and issue["field"] == "PID-7"
    assert issue["target"] == "Patient.birthDate" and "no valid birth date" in issue["reason"]
    attempts = client.get(f"/api/v1/deliveries/{delivery.pk}/attempts/").json()
    assert attempts[0]["issues"][0]["code"] == "invariant"
    listed = client.get(f"/api/v1/deliveries/?message={delivery.message_id}").json()
    lane = listed["results"][0]["ordering_key"]
    assert lane.startswith("lane-")
    seen = json.dumps([body, attempts, listed])
    assert NAME not in seen and MRN not in seen and "19XX0101" not in seen


def test_the_same_key_gives_the_same_lane(viewer_user, delivery):
    other = Delivery.objects.create(
        message=Message.objects.create(channel=delivery.message.channel, raw=b"x"),
        destination=delivery.destination,
        ordering_key=MRN,
    )
    client = signed_in(viewer_user)
    lanes = {
        client.get(f"/api/v1/deliveries/{d.pk}/").json()["ordering_key"] for d in (delivery, other)
    }
    assert len(lanes) == 1


def test_an_operator_reveal_shows_the_quoted_value(operator_user, delivery):
    revealed = signed_in(operator_user).post(f"/api/v1/messages/{delivery.message_id}/reveal/")
    assert revealed.json()["issues"][0]["value"] == "19XX0101"


def test_the_message_page_masks_the_issue_for_a_viewer(viewer_user, delivery):
    html = signed_in(viewer_user).get(f"/messages/{delivery.message_id}/").content.decode()
    assert "no valid birth date" in html and NAME not in html and MRN not in html


def test_once_the_body_is_pruned_what_the_destination_said_is_masked_whole(viewer_user, delivery):
    Attempt.objects.filter(delivery=delivery).update(
        error=f"answered 422: Patient {NAME} Jane refused"  # unquoted: only the body could tell
    )
    Message.objects.filter(pk=delivery.message_id).update(raw=b"", pruned_at=timezone.now())
    client = signed_in(viewer_user)
    [attempt] = client.get(f"/api/v1/deliveries/{delivery.pk}/attempts/").json()
    assert attempt["error"] == "***" and attempt["status_code"] == 422
    assert attempt["issues"][0] == {"severity": "error", "code": "invariant", "diagnostics": "***"}
    html = client.get(f"/messages/{delivery.message_id}/").content.decode()
    assert NAME not in html and "Jane" not in html
