"""Issue 15, finding 1: a destination that repeats the patient's data in its error reply.

A real FHIR sink refuses the patient with 400 and an OperationOutcome that names them, unquoted,
as real servers do; a real worker delivers to it. A viewer reads the attempt in the API and on the
message page without any of the patient's data; the reason stays readable. An operator's reveal
still shows the destination's words as they came."""

from __future__ import annotations

import json

import pytest

from channels_app.models import Delivery
from console.models import AuditEvent
from tests import factories
from tests.support import PatientNamingSink, send, signed_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FAMILY, MRN = "ZZQXWARTHOG", "MRN-60417"
# What factories.adt_a01 gives every patient besides: given name, birth date, city, phone.
PHI = [FAMILY, MRN, "JANE", "19800101", "1980-01-01", "SPRINGFIELD", "555-1234"]


@pytest.fixture
def refused(mllp_port, listener, celery_worker):
    """A message whose delivery the sink refused, naming the patient."""
    sink = PatientNamingSink(refuse_every=1).start()
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, sink.url)
    listener(channel)
    try:
        ack = send(mllp_port, factories.adt_a01("PHI-ECHO-1", family=FAMILY, mrn=MRN))
        assert b"MSA|AA" in ack
        yield wait_for(
            lambda: (
                Delivery.objects.filter(message__control_id="PHI-ECHO-1", status="FAILED")
                .select_related("message")
                .first()
            ),
            what="the refused delivery",
        )
    finally:
        sink.stop()


def leaked(text: str) -> list[str]:
    return [value for value in PHI if value.lower() in text.lower()]


def test_the_destination_did_name_the_patient(refused):
    attempt = refused.attempts.get()
    assert attempt.status_code == 400
    assert FAMILY in attempt.error and MRN in attempt.error
    assert FAMILY in attempt.issues[0]["diagnostics"]  # what a viewer must not read


def test_a_viewer_reads_the_attempt_in_the_api_without_phi(viewer_user, refused):
    response = signed_in(viewer_user).get(f"/api/v1/deliveries/{refused.pk}/attempts/")
    assert response.status_code == 200
    (attempt,) = response.json()
    assert leaked(json.dumps(attempt)) == []
    assert "answered 400" in attempt["error"] and "duplicate record" in attempt["error"]
    issue = attempt["issues"][0]
    assert issue["code"] == "duplicate" and issue["expression"] == ["Patient.identifier[0]"]
    assert issue["diagnostics"].startswith("Patient ***")
    assert issue["diagnostics"].endswith("rejected: duplicate record")


def test_a_viewer_reads_the_message_page_without_phi(viewer_user, refused):
    client = signed_in(viewer_user)
    html = client.get(f"/messages/{refused.message_id}/").content.decode()
    assert "duplicate record" in html and "answered 400" in html
    assert leaked(html) == []
    listed = client.get("/messages/").content.decode()
    api = client.get(f"/api/v1/messages/{refused.message_id}/").content.decode()
    assert leaked(listed) == [] and leaked(api) == []


def test_an_operator_sees_it_masked_until_an_audited_reveal(operator_user, refused):
    client = signed_in(operator_user)
    masked = client.get(f"/messages/{refused.message_id}/").content.decode()
    assert leaked(masked) == []
    attempts = client.get(f"/api/v1/deliveries/{refused.pk}/attempts/").content.decode()
    assert leaked(attempts) == []  # the attempt log never reveals, for any role
    revealed = client.post(f"/messages/{refused.message_id}/reveal/").content.decode()
    assert f"Patient {FAMILY} JANE" in revealed and "rejected: duplicate record" in revealed
    assert AuditEvent.objects.filter(
        action="phi.reveal", target=f"message:{refused.message_id}"
    ).exists()
