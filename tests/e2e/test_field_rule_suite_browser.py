"""In Chromium, end to end as an analyst works: a sample of an HL7 v2 channel is saved on the test
bench and its output accepted; on the Mapping page a field rule, its source picked in the parse
tree, maps the identifier's assigning authority through a lookup table and is saved to the
draft; the regression suite run on the draft reports the sample "changed" with the field's old
and new value while what runs still passes; the publish preview lists it as changed; after
publishing the suite reports it "changed" against the accepted output until that is accepted
again, and then "passed"."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from channels_app import drafts
from channels_app.models import ChannelSample, Message
from console.roles import Role, set_role
from tests import factories
from tests.e2e.pages import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-analyst-password"
OID = "urn:oid:2.16.840.1.113883.19.5"


@pytest.fixture
def channel(django_user_model, fhir_sink):
    set_role(django_user_model.objects.create_user("analyst", password=PASSWORD), Role.ANALYST)
    channel = factories.channel(41011, name="Admissions")
    factories.fhir_destination(channel, fhir_sink.url, name="EHR")
    return channel


def save_and_accept_a_sample(page) -> None:
    page.locator("[data-action=test-bench]").click()
    raw = factories.adt_a01("SUITE-1", mrn="MRN-SUITE").decode().replace("\r", "\n")
    page.locator("#bench-raw").fill(raw)
    page.locator("[data-action=run]").click()
    expect(page.locator("[data-output=EHR]")).to_contain_text("MRN-SUITE")
    page.locator("#bench-name").fill("admission")
    page.locator("[data-action=save-sample]").click()
    row = page.locator("#bench-samples tr[data-sample=admission]")
    row.locator("[data-action=accept]").click()
    expect(page.locator("#bench-samples tr[data-sample=admission]")).not_to_contain_text("not yet")


def add_authority_rule(page) -> None:
    """A lookup table and a rule through it, the source clicked in the sample's parse tree."""
    page.locator("#table-name").fill("authorities")
    page.locator("[data-action=add-table]").click()
    page.locator("[data-table=authorities]").fill(f"code,value\nHOSP,{OID}\n")
    page.locator("[data-action=add-rule]").click()
    page.locator("#sample-select").select_option(label="admission")
    page.locator('#preview-tree button.bench-path[data-path="PID-3(1).4"]').click()
    rule = page.locator(".mapping-rule").first
    expect(rule.locator("[data-key=source]")).to_have_value("PID-3(1).4")
    rule.locator("[data-key=name]").fill("MRN authority as its OID")
    rule.locator("[data-key=target]").fill("Patient.identifier[0].system")
    rule.locator("[data-action=add-transform]").select_option("lookup:authorities")
    page.locator("[data-action=save-mapping]").click()
    expect(page.locator("#mapping-status")).to_contain_text("Saved to the draft: 1 rule(s)")


def run_all(page, action: str = "run-all"):
    """Each run below ends in a status other than the row's last one, so expecting it waits."""
    page.locator(f"[data-action={action}]").click()
    return page.locator("#bench-samples tr[data-sample=admission]")


def test_a_drafted_field_rule_shows_as_changed_in_the_suite_until_accepted_again(
    page, asgi_server, channel, fhir_sink
):
    sign_in(page, asgi_server, "analyst", PASSWORD)
    save_and_accept_a_sample(page)
    expect(run_all(page)).to_have_attribute("data-status", "passed")
    expect(page.locator("[data-action=run-all-draft]")).to_have_count(0)  # no draft yet

    page.locator("[data-action=mapping]").click()
    add_authority_rule(page)
    assert drafts.draft_of(channel)["mapping"]["tables"] == {"authorities": {"HOSP": OID}}
    page.reload()
    expect(page.locator("[data-draft-note]")).to_contain_text("unpublished draft")

    page.locator("[data-action=test-bench]").click()
    expect(run_all(page, "run-all-draft")).to_have_attribute("data-status", "changed")
    expect(page.locator("[data-ran-against]")).to_have_text("as the draft would run")
    expect(page.locator("[data-count=changed]")).to_have_text("1 changed")
    diff = page.locator('pre.bench-diff[data-diff="admission"]')
    expect(diff.locator(".diff-add", has_text=f'"system": "{OID}"').first).to_be_visible()
    old_system = diff.locator(".diff-del", has_text='"system":').first
    expect(old_system).not_to_contain_text(OID)
    expect(run_all(page)).to_have_attribute("data-status", "passed")  # what runs is unchanged

    page.locator("[data-draft-note] a", has_text="review and publish").click()
    preview = page.locator("#draft-preview tr[data-sample=admission]")
    expect(preview).to_have_attribute("data-status", "changed")
    expect(page.locator('#draft-preview [data-diff="admission"]')).to_contain_text(OID)
    page.get_by_label("Note for this version").fill("MRN authority as its OID")
    page.get_by_role("button", name="Publish as version 1").click()
    expect(page.locator("[data-flash]")).to_contain_text("published as version 1")

    page.goto(f"{asgi_server}/channels/{channel.pk}/bench/")
    expect(page.locator("[data-action=run-all-draft]")).to_have_count(0)  # published: no draft
    expect(run_all(page)).to_have_attribute("data-status", "changed")
    expect(page.locator("[data-ran-against]")).to_have_text("as the channel runs now")
    expect(diff.locator(".diff-add", has_text=f'"system": "{OID}"').first).to_be_visible()

    page.locator("#bench-samples tr[data-sample=admission] [data-action=accept]").click()
    accepted = page.locator("#bench-samples tr[data-sample=admission]")
    expect(accepted).to_have_attribute("data-status", "")  # the list as accepting answers it
    expect(run_all(page)).to_have_attribute("data-status", "passed")
    expect(page.locator("[data-count=passed]")).to_have_text("1 passed")
    assert OID in str(ChannelSample.objects.get(name="admission").accepted)
    assert not Message.objects.exists() and fhir_sink.requests == []
