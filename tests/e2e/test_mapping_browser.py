"""In Chromium: an analyst opens a channel's Mapping page, picks a sample, clicks a PID field in
its parse tree to start a rule, adds a transform, sees the preview, saves, and the test bench's
dry run of a new message shows the rule applied."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from channels_app import drafts
from channels_app.models import ChannelSample
from console.models import AuditEvent
from console.roles import Role, set_role
from tests import factories
from tests.e2e.pages import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-analyst-password"


@pytest.fixture
def channel(django_user_model, fhir_sink):
    set_role(django_user_model.objects.create_user("mapper", password=PASSWORD), Role.ANALYST)
    channel = factories.channel(40911, name="Registrations")
    factories.fhir_destination(channel, fhir_sink.url, name="EHR")
    ChannelSample.objects.create(
        channel=channel, name="walk-in", raw=factories.adt_a01("MAP-1", family="lowkey").decode()
    )
    return channel


def test_a_rule_picked_from_the_parse_tree_is_previewed_saved_and_applied(
    page, asgi_server, channel
):
    sign_in(page, asgi_server, "mapper", PASSWORD)
    page.locator("[data-action=mapping]").click()
    expect(page.get_by_role("heading", name="Mapping")).to_be_visible()
    expect(page.locator("#builtin-map tr[data-v2=PID-5]")).to_contain_text("Patient.name")

    page.locator("[data-action=add-rule]").click()
    page.locator("#sample-select").select_option(label="walk-in")
    field = page.locator('#preview-tree button.bench-path[data-path="PID-5(1).1"]')
    field.click()
    rule = page.locator(".mapping-rule").first
    expect(rule.locator("[data-key=source]")).to_have_value("PID-5(1).1")
    rule.locator("[data-key=name]").fill("family in capitals")
    rule.locator("[data-key=target]").fill("Patient.name[0].family")
    rule.locator("[data-action=add-transform]").select_option("upper")
    expect(rule.locator("[data-key=transforms]")).to_have_value('["upper"]')

    page.locator("[data-action=preview]").click()
    expect(page.locator("#preview-bundle")).to_contain_text('"family": "LOWKEY"')

    rule.locator("[data-key=target]").fill("Patient.nickname")
    page.locator("[data-action=save-mapping]").click()
    expect(rule.locator(".rule-error")).to_contain_text("rule #1 ('family in capitals'), target")
    rule.locator("[data-key=target]").fill("Patient.name[0].family")
    page.locator("[data-action=save-mapping]").click()
    expect(page.locator("#mapping-status")).to_contain_text("Saved to the draft: 1 rule(s)")
    channel.refresh_from_db()
    assert channel.mapping == {}  # what runs changes only when the draft is published
    assert AuditEvent.objects.filter(action="channel.draft_saved").count() == 1

    page.locator("[data-action=review-publish]").click()
    expect(page.locator('[data-change="mapping.rules"]')).to_contain_text("family in capitals")
    page.get_by_label("Note for this version").fill("family names in capitals")
    page.get_by_role("button", name="Publish as version 1").click()
    expect(page.locator("[data-flash]")).to_contain_text("published as version 1")
    channel.refresh_from_db()
    assert channel.mapping["rules"] == [
        {
            "name": "family in capitals",
            "source": "PID-5(1).1",
            "target": "Patient.name[0].family",
            "transforms": ["upper"],
        }
    ]

    page.goto(f"{asgi_server}/channels/{channel.pk}/bench/")
    raw = factories.adt_a01("MAP-2", family="quietname").decode().replace("\r", "\n")
    page.locator("#bench-raw").fill(raw)
    page.locator("[data-action=run]").click()
    expect(page.locator("[data-output=EHR]")).to_contain_text('"family": "QUIETNAME"')


def test_a_lookup_table_uploaded_as_csv_is_checked_then_used_by_a_rule(page, asgi_server, channel):
    sign_in(page, asgi_server, "mapper", PASSWORD)
    page.goto(f"{asgi_server}/channels/{channel.pk}/mapping/")
    page.locator("#table-name").fill("sex")
    page.locator("#table-file").set_input_files(
        files=[{"name": "sex.csv", "mimeType": "text/csv", "buffer": b"code,value\nF,female,x\n"}]
    )
    table = page.locator("[data-table=sex]")
    expect(table).to_have_value("code,value\nF,female,x\n")
    page.locator("[data-action=save-mapping]").click()
    expect(page.locator("[data-table-box=sex] .table-error")).to_have_text(
        "table 'sex': row 2: expected 2 columns (code,value), found 3"
    )
    table.fill("code,value\nF,female\n")

    page.locator("[data-action=add-rule]").click()
    rule = page.locator(".mapping-rule").first
    rule.locator("[data-key=source]").fill("PID-8")
    rule.locator("[data-key=target]").fill("Patient.gender")
    rule.locator("[data-action=add-transform]").select_option("lookup:sex")
    page.locator("#preview-raw").fill(factories.adt_a01("MAP-3").decode().replace("\r", "\n"))
    page.locator("[data-action=preview]").click()
    expect(page.locator("#preview-bundle")).to_contain_text('"gender": "female"')
    page.locator("[data-action=save-mapping]").click()
    expect(page.locator("#mapping-status")).to_contain_text("Saved to the draft: 1 rule(s)")
    drafted = drafts.draft_of(channel)["mapping"]
    assert drafted["tables"] == {"sex": {"F": "female"}}
    assert drafted["rules"][0]["transforms"] == [{"op": "lookup", "table": "sex"}]
    page.reload()  # the page shows the draft's rules
    expect(page.locator("[data-table=sex]")).to_have_value(re.compile(r"^F,female\s*$"))
