"""In Chromium, under the real Content-Security-Policy: on-call staff search a patient's messages
by a name typed in lower case without its accent, see that one failed at a destination (not
"Routed"), open it and read its timeline; an unknown filter value is shown, not ignored."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from adapters.transports.mllp import MLLPClient
from channels_app.models import Delivery, Message
from console.roles import Role, set_role
from tests import factories
from tests.support import PatientNamingSink, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-oncall-password"
WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture
def traffic(django_user_model, mllp_port, listener, celery_worker):
    """Three patients; Müller's message is refused by the destination."""
    set_role(django_user_model.objects.create_user("oncall", password=PASSWORD), Role.VIEWER)
    sink = PatientNamingSink().start()
    channel = factories.channel(mllp_port, name="Admissions")
    factories.fhir_destination(channel, sink.url, name="EHR FHIR", max_attempts=1)
    listener(channel)
    sent = [("E2E-1", "SMITH", 200), ("E2E-2", "MÜLLER", 400), ("E2E-3", "JONES", 200)]
    with MLLPClient("127.0.0.1", mllp_port) as client:
        for number, (control_id, family, answer) in enumerate(sent, start=1):
            if answer != 200:
                sink.fail_next(1, answer)
            client.send(factories.adt_a01(control_id, family=family, mrn=control_id))
            wait_for(  # one at a time: the refusal goes to the message meant
                lambda n=number: (
                    Delivery.objects.filter(status__in=["DELIVERED", "FAILED"]).count() == n
                ),
                what=f"{control_id} settled",
            )
    yield Message.objects.get(control_id="E2E-2")
    sink.stop()


def test_search_a_patient_and_read_the_timeline(page, asgi_server, traffic):
    page.add_init_script(WATCH_CSP)
    page.goto(f"{asgi_server}/login/?next=/messages/")
    page.get_by_label("Username").fill("oncall")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#messages-table tbody tr")).to_have_count(3)

    page.get_by_label("Search").fill("mull")
    page.get_by_label("Search").press("Enter")
    expect(page).to_have_url(re.compile(r"q=mull"))
    rows = page.locator("#messages-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("E2E-2")
    expect(rows.first.locator("[data-outcome]")).to_have_text(re.compile("Failed"))
    expect(rows.first).to_contain_text("EHR FHIR")
    expect(rows.first).not_to_contain_text("Routed")

    page.get_by_label("Search").fill("nobody-here")
    page.get_by_label("Search").press("Enter")
    expect(page.locator("#messages-table")).to_contain_text("No messages match this search.")

    page.goto(f"{asgi_server}/messages/?status=BOGUS")
    expect(page.locator("#filter-errors")).to_contain_text("status")
    expect(page.locator("#filter-errors")).to_contain_text("BOGUS")

    page.goto(f"{asgi_server}/messages/{traffic.pk}/")
    expect(page.locator("#message-outcome")).to_have_text(re.compile("Failed"))
    timeline = page.locator("#timeline li")
    expect(timeline.first).to_contain_text("Received on Admissions")
    expect(page.locator("#timeline")).to_contain_text("Routed to EHR FHIR")
    expect(page.locator("#timeline")).to_contain_text("Attempt 1 to EHR FHIR: Failed permanently")
    expect(page.locator("#timeline")).to_contain_text("Failed at EHR FHIR")
    expect(page.locator("#timeline")).not_to_contain_text("MÜLLER")  # the refusal is masked
    assert page.evaluate("() => window.__violations") == []
