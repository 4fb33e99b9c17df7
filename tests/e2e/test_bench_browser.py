"""In Chromium: an analyst tries a message on the test bench (nothing stored, nothing sent), saves
it as a sample and accepts its output, changes a destination's routing rule, and the regression
suite reports the sample as changed with a diff that shows the routing flip."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from channels_app.models import ChannelSample, Destination, Message
from console.roles import Role, set_role
from tests import factories
from tests.e2e.pages import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-analyst-password"


@pytest.fixture
def channel(django_user_model, fhir_sink):
    set_role(django_user_model.objects.create_user("integrator", password=PASSWORD), Role.ANALYST)
    channel = factories.channel(40611, name="Admissions")
    factories.fhir_destination(channel, fhir_sink.url, name="EHR")
    return channel


def change_route(page, rule: str) -> None:
    """Edit the destination's rule (it goes to the channel's draft) and publish the draft."""
    page.locator("[data-action=edit-destination]").first.click()
    page.get_by_label("Route when").fill(rule)
    page.get_by_role("button", name=re.compile("Save")).click()
    page.get_by_role("link", name="Review & publish").first.click()
    page.get_by_label("Note for this version").fill("only results")
    page.get_by_role("button", name=re.compile("Publish as version")).click()
    expect(page.locator("[data-flash]")).to_contain_text("published as version")


def test_bench_run_save_accept_then_a_rule_change_shows_in_run_all(
    page, asgi_server, channel, fhir_sink
):
    sign_in(page, asgi_server, "integrator", PASSWORD)
    page.locator("[data-action=test-bench]").click()
    expect(page.get_by_role("heading", name="Test bench")).to_be_visible()

    raw = factories.adt_a01("BENCH-E2E", mrn="MRN-E2E").decode().replace("\r", "\n")
    page.locator("#bench-raw").fill(raw)
    page.locator("[data-action=run]").click()
    expect(page.locator("#bench-routing tr[data-destination=EHR]")).to_have_attribute(
        "data-routed", "true"
    )
    expect(page.locator("[data-output=EHR]")).to_contain_text("MRN-E2E")
    page.locator('button.bench-path[data-path="PID-3(1).1"]').click()
    expect(page.locator("#bench-picked")).to_have_text("PID-3(1).1")

    page.locator("#bench-name").fill("admission")
    page.locator("[data-action=save-sample]").click()
    row = page.locator("#bench-samples tr[data-sample=admission]")
    expect(row).to_contain_text("not yet")
    row.locator("[data-action=accept]").click()
    expect(page.locator("#bench-samples tr[data-sample=admission]")).not_to_contain_text("not yet")
    page.locator("[data-action=run-all]").click()
    expect(page.locator("#bench-samples tr[data-sample=admission]")).to_have_attribute(
        "data-status", "passed"
    )

    page.goto(f"{asgi_server}/channels/")
    change_route(page, "%messageCode = 'ORU'")
    assert Destination.objects.get(channel=channel).route_when == "%messageCode = 'ORU'"

    page.goto(f"{asgi_server}/channels/{channel.pk}/bench/")
    page.locator("[data-action=run-all]").click()
    row = page.locator("#bench-samples tr[data-sample=admission]")
    expect(row).to_have_attribute("data-status", "changed")
    expect(page.locator("[data-count=changed]")).to_have_text("1 changed")
    diff = page.locator('pre.bench-diff[data-diff="admission"]')
    expect(diff.locator(".diff-del", has_text='"routed": true')).to_have_count(1)
    expect(diff.locator(".diff-add", has_text='"routed": false')).to_have_count(1)

    assert ChannelSample.objects.get(name="admission").accepted is not None
    assert not Message.objects.exists() and fhir_sink.requests == []
