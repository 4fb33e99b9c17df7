"""In Chromium: an analyst adds a FHIR destination with a routing rule (a rule that does not
parse is refused next to its field first), a lab sends a final and a preliminary ORU over a real
MLLP socket, and the message pages say which went where, and why."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from channels_app.models import Destination, Message
from console.roles import Role, set_role
from tests import factories
from tests.e2e.pages import sign_in
from tests.support import publish_in_browser, send, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-analyst-password"
FINAL_REPORT = "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()"


@pytest.fixture
def lab(django_user_model, mllp_port, listener, celery_worker):
    set_role(django_user_model.objects.create_user("integrator", password=PASSWORD), Role.ANALYST)
    channel = factories.channel(mllp_port, name="Lab results")
    listener(channel)
    return channel


def add_destination_with_rule(page, sink_url: str) -> None:
    page.locator("[data-action=add-destination]").click()
    page.locator("[data-transport=fhir_rest]").click()
    expect(page.get_by_role("heading", name="New destination")).to_be_visible()
    page.locator("#id_name").fill("Final results")
    page.locator("#id_config-base_url").fill(sink_url)
    rule = page.get_by_label("Route when")
    rule.fill("entry.resource.ofType(DiagnosticReport).where(status = 'final'")
    page.get_by_role("button", name="Add to draft").click()
    field = page.locator("[data-field=route_when]")
    expect(field.locator(".invalid-feedback")).to_contain_text("at character 63")
    expect(page.locator("#form-errors")).to_contain_text("Nothing was saved")
    page.get_by_label("Route when").fill(FINAL_REPORT)
    page.get_by_role("button", name="Add to draft").click()
    expect(page).to_have_url(re.compile(r"/channels/#channel-\d+$"))


def test_analyst_routes_final_results_and_sees_why(page, asgi_server, lab, mllp_port, fhir_sink):
    sign_in(page, asgi_server, "integrator", PASSWORD)
    add_destination_with_rule(page, fhir_sink.url)
    publish_in_browser(page, lab.pk)
    destination = Destination.objects.get(channel=lab, name="Final results")
    assert destination.route_when == FINAL_REPORT

    send(mllp_port, factories.oru_r01("LAB-FINAL", status="F"))
    send(mllp_port, factories.oru_r01("LAB-PRELIM", status="P"))
    final = wait_for(
        lambda: Message.objects.filter(control_id="LAB-FINAL", status="PROCESSED").first(),
        what="the final ORU routed",
    )
    preliminary = wait_for(
        lambda: Message.objects.filter(control_id="LAB-PRELIM", status="FILTERED").first(),
        what="the preliminary ORU filtered",
    )

    page.goto(f"{asgi_server}/messages/?status=FILTERED")
    rows = page.locator("#messages-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("LAB-PRELIM")
    expect(rows.first.locator("[data-filtered-because]")).to_contain_text("evaluated false")
    rows.first.get_by_role("link").click()
    expect(page).to_have_url(f"{asgi_server}/messages/{preliminary.pk}/")
    decision = page.locator("#routing tbody tr", has_text="Final results")
    expect(decision).to_contain_text("not routed")
    expect(decision.locator("code")).to_have_text(FINAL_REPORT)
    expect(decision).to_contain_text("evaluated false")

    page.goto(f"{asgi_server}/messages/{final.pk}/")
    decision = page.locator("#routing tbody tr", has_text="Final results")
    expect(decision).to_contain_text("routed")
    expect(decision.locator("code")).to_have_text(FINAL_REPORT)
    expect(decision).to_contain_text("evaluated true")
    wait_for(lambda: fhir_sink.bundles(), what="the final ORU at the FHIR server")
    assert [b["identifier"]["value"] for b in fhir_sink.bundles()] == ["LAB-FINAL"]
