"""In a real browser: sign in, watch a message arrive and get delivered, open it, see an error."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from adapters.transports.mllp import MLLPClient
from channels_app.models import Message
from console.roles import Role, set_role
from tests import factories
from tests.e2e.pages import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-demo-password"


@pytest.fixture
def hub(django_user_model, mllp_port, listener, celery_worker, fhir_sink):
    set_role(django_user_model.objects.create_user("oncall", password=PASSWORD), Role.OPERATOR)
    channel = factories.channel(mllp_port, name="Lab results")
    factories.fhir_destination(channel, fhir_sink.url, name="EHR FHIR")
    listener(channel)
    return channel


def test_message_appears_live_then_detail_shows_everything(page, asgi_server, hub, mllp_port):
    sign_in(page, asgi_server, "oncall", PASSWORD, at="/messages/")
    expect(page.get_by_text("No messages yet")).to_be_visible()
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(factories.adt_a01("E2E-1", family="NGUYEN"))
    row = page.locator("#messages-table tbody tr", has_text="E2E-1")
    expect(row).to_be_visible()  # arrives without a reload (htmx polling)
    expect(row.locator('[data-outcome="DELIVERED"]')).to_be_visible(timeout=20_000)
    expect(row).to_contain_text("Lab results")
    row.get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text("ADT^A01")
    # Masked until the operator asks (and the ask is audited).
    expect(page.locator("#raw-hl7")).to_contain_text("PID|1||***^^^***^***||***^***^***")
    page.get_by_role("button", name="Reveal PHI").click()
    expect(page.locator("#raw-hl7")).to_contain_text("PID|1||MRN123^^^HOSP^MR||NGUYEN^JANE^Q")
    expect(page.locator("#canonical-json")).to_contain_text('"family": "NGUYEN"')
    card = page.locator(".card", has_text="EHR FHIR")
    expect(card).to_contain_text("Delivered")
    expect(card.locator("tbody tr")).to_have_count(1)
    expect(card).to_contain_text("200")


def test_unreadable_message_shows_its_reason(page, asgi_server, hub, mllp_port):
    sign_in(page, asgi_server, "oncall", PASSWORD, at="/messages/")
    with MLLPClient("127.0.0.1", mllp_port) as client:
        client.send(b"PID|1||123\r")
    row = page.locator("#messages-table tbody tr", has_text="Error")
    expect(row).to_contain_text("must start with an MSH segment")
    page.get_by_label("Status").select_option("ERROR")
    expect(page).to_have_url(re.compile(r"status=ERROR"))
    row.get_by_role("link").click()
    expect(page.locator("#message-error")).to_contain_text("Stopped at the parse stage")


def test_sign_out_ends_the_session(page, asgi_server, hub):
    sign_in(page, asgi_server, "oncall", PASSWORD, at="/messages/")
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{asgi_server}/channels/")
    expect(page).to_have_url(re.compile(r"/login/"))


def test_viewer_sees_masked_hl7_and_operator_reveals_it(page, asgi_server, django_user_model):
    set_role(django_user_model.objects.create_user("watcher", password=PASSWORD), Role.VIEWER)
    set_role(django_user_model.objects.create_user("oncall", password=PASSWORD), Role.OPERATOR)
    message = Message.objects.create(
        channel=factories.channel(40301, name="Admissions"),
        raw=factories.adt_a01("MASK-1", family="OKAFOR", mrn="MRN9001"),
        message_type="ADT^A01",
        control_id="MASK-1",
    )
    sign_in(page, asgi_server, "watcher", PASSWORD, at="/messages/")
    page.goto(f"{asgi_server}/messages/{message.pk}/")
    raw = page.locator("#raw-hl7")
    expect(raw).to_contain_text("MSH|^~\\&|EPIC|HOSP")
    expect(raw).to_contain_text("PID|1||***^^^***^***||***^***^***||***|F")
    expect(raw).not_to_contain_text("OKAFOR")
    expect(page.locator("#phi-status")).to_contain_text("your role does not include viewing PHI")
    expect(page.get_by_role("button", name="Reveal PHI")).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, asgi_server, "oncall", PASSWORD, at="/messages/")
    page.goto(f"{asgi_server}/messages/{message.pk}/")
    expect(page.locator("#raw-hl7")).not_to_contain_text("OKAFOR")
    page.get_by_role("button", name="Reveal PHI").click()
    expect(page.locator("#raw-hl7")).to_contain_text("MRN9001^^^HOSP^MR||OKAFOR^JANE^Q")
    expect(page.locator("#phi-status")).to_contain_text("recorded in the audit log")
    expect(page).to_have_url(f"{asgi_server}/messages/{message.pk}/")  # swapped in place (htmx)
