"""In Chromium: an analyst changes a destination in the browser, which goes to the channel's draft
(what runs is untouched); the publish page shows the change and what it does to the channel's
sample; published with a note, it is a new version on the Versions page, where two versions are
compared; an admin rolls back, which publishes the old settings as one more version."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from channels_app.models import ChannelSample, Destination
from console.models import AuditEvent
from console.roles import Role, set_role
from tests import factories
from tests.e2e.pages import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-analyst-password"
OLD_URL, NEW_URL = "http://127.0.0.1:9/fhir", "http://127.0.0.1:9/fhir-v2"
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture
def channel(django_user_model):
    for name, role in (("integrator", Role.ANALYST), ("chief", Role.ADMIN)):
        set_role(django_user_model.objects.create_user(name, password=PASSWORD), role)
    channel = factories.channel(40801, name="Lab feed")
    factories.fhir_destination(channel, OLD_URL, name="EHR")
    ChannelSample.objects.create(
        channel=channel, name="admission", raw=factories.adt_a01().decode()
    )
    channel.publish(note="first")
    return channel


def test_edit_preview_publish_compare_and_roll_back(page, browser, asgi_server, channel):
    ehr = channel.destinations.get()
    page.add_init_script(WATCH)
    sign_in(page, asgi_server, "integrator", PASSWORD)
    page.get_by_role("link", name="Edit EHR").click()
    page.locator("#id_config-base_url").fill(NEW_URL)
    page.get_by_role("button", name="Save to draft").click()

    card = page.locator(f"#channel-{channel.pk}")
    expect(card.locator("[data-draft]")).to_contain_text("Draft: 1 change")
    assert Destination.objects.get(pk=ehr.pk).config["base_url"] == OLD_URL  # still running

    card.get_by_role("link", name="Review & publish").click()
    expect(page.locator('[data-change="destinations.EHR.config.base_url"]')).to_contain_text(
        NEW_URL
    )
    sample = page.locator('[data-sample="admission"]')
    expect(sample).to_have_attribute("data-status", "changed")
    expect(page.locator('[data-diff="admission"]')).to_contain_text(
        f'+      "target": "POST {NEW_URL}/"'
    )
    page.get_by_label("Note for this version").fill("EHR moved to its v2 endpoint")
    page.get_by_role("button", name="Publish as version 2").click()

    expect(page.locator("[data-flash]")).to_contain_text("published as version 2")
    row = page.locator("#version-2")
    expect(row).to_contain_text("integrator")
    expect(row.locator("[data-note]")).to_have_text("EHR moved to its v2 endpoint")
    assert Destination.objects.get(pk=ehr.pk).config["base_url"] == NEW_URL
    expect(page.locator("[data-action=roll-back]")).to_have_count(0)  # analysts do not roll back

    page.get_by_label("Compare from version 1").check()
    page.get_by_label("Compare to version 2").check()
    page.get_by_role("button", name="Compare A → B").click()
    change = page.locator('#version-diff [data-change="destinations.EHR.config.base_url"]')
    expect(change).to_contain_text(OLD_URL)
    expect(change).to_contain_text(NEW_URL)
    assert page.evaluate("() => window.__violations") == []

    admin = browser.new_context().new_page()
    admin.add_init_script(WATCH)
    sign_in(admin, asgi_server, "chief", PASSWORD)
    admin.goto(f"{asgi_server}/channels/{channel.pk}/versions/")
    admin.get_by_role("link", name="Roll back to version 1").click()
    expect(admin.locator('[data-change="destinations.EHR.config.base_url"]')).to_contain_text(
        OLD_URL
    )
    admin.get_by_role("button", name="Roll back").click()
    expect(admin.locator("[data-flash]")).to_contain_text("published as version 3")
    expect(admin.locator("#version-3 [data-note]")).to_have_text("rollback to v1")
    assert Destination.objects.get(pk=ehr.pk).config["base_url"] == OLD_URL
    assert list(channel.versions.values_list("number", flat=True)) == [3, 2, 1]
    assert AuditEvent.objects.filter(action="channel.rolled_back").count() == 1
    assert admin.evaluate("() => window.__violations") == []
    admin.context.close()
