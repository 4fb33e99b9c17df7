"""In a real browser: a destination refuses a patient and names them in its answer; the operator
reads the refusal masked on the message page, then reveals it (issue 15, finding 1)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from adapters.transports.mllp import MLLPClient
from console.roles import Role, set_role
from tests import factories
from tests.support import PatientNamingSink

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-demo-password"
FAMILY = "ZZQXBITTERN"


@pytest.fixture
def refusing_hub(django_user_model, mllp_port, listener, celery_worker):
    set_role(django_user_model.objects.create_user("oncall", password=PASSWORD), Role.OPERATOR)
    sink = PatientNamingSink(refuse_every=1).start()
    channel = factories.channel(mllp_port, name="Admissions")
    factories.fhir_destination(channel, sink.url, name="EHR FHIR")
    listener(channel)
    yield channel
    sink.stop()


def test_the_refusal_is_masked_until_the_operator_reveals_it(
    page, asgi_server, refusing_hub, mllp_port
):
    page.goto(f"{asgi_server}/messages/")
    page.get_by_label("Username").fill("oncall")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("E2E-PHI-1", family=FAMILY, mrn="MRN-55120"))
    row = page.locator("#messages-table tbody tr", has_text="E2E-PHI-1")
    expect(row.locator('[data-destination-state="FAILED"]')).to_be_visible(timeout=20_000)
    row.get_by_role("link").click()
    card = page.locator(".card", has_text="EHR FHIR")
    expect(card).to_contain_text("rejected: duplicate record")
    expect(card).to_contain_text("Patient *** ***")
    expect(page.locator("#phi")).not_to_contain_text(re.compile(f"{FAMILY}|MRN-55120|JANE", re.I))
    page.get_by_role("button", name="Reveal PHI").click()
    expect(card).to_contain_text(f"Patient {FAMILY} JANE")
    expect(card).to_contain_text("MRN-55120")
