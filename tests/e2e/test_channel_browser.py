"""In Chromium, under the real Content-Security-Policy: an analyst creates a channel with an MLLP
source on a free port, edits it, clones it onto another port (the copy starts disabled, with the
destinations) and archives the original, which leaves the list but keeps its history."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from channels_app.models import Channel
from console.models import AuditEvent
from console.roles import Role, set_role
from tests import factories
from tests.support import free_port, publish_in_browser

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-analyst-password"
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture
def analyst(django_user_model):
    set_role(django_user_model.objects.create_user("builder", password=PASSWORD), Role.ANALYST)


def card(page, name: str):
    return page.locator(".card", has=page.locator(f"[data-channel-name]:text-is('{name}')"))


def test_analyst_creates_edits_clones_and_archives_a_channel(page, asgi_server, analyst):
    page.add_init_script(WATCH)
    port, clone_port = free_port(), free_port()
    page.goto(f"{asgi_server}/channels/")
    page.get_by_label("Username").fill("builder")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("link", name="New channel").click()
    expect(page.get_by_role("heading", name="New channel")).to_be_visible()
    page.locator("#id_name").fill("Radiology in")
    page.get_by_label("Tags").fill("imaging, north")
    page.get_by_label("Port").fill(str(port))
    page.get_by_role("button", name="Create channel").click()
    expect(page.locator("[data-flash]")).to_contain_text("Channel “Radiology in” created.")
    created = Channel.objects.get(name="Radiology in")
    assert created.source_config == {"port": port} and created.tags == ["imaging", "north"]
    expect(card(page, "Radiology in")).to_contain_text(f"MLLP on 127.0.0.1:{port}")
    factories.fhir_destination(created, "http://127.0.0.1:9/fhir", name="PACS FHIR")

    page.get_by_role("link", name="Edit channel Radiology in").click()
    expect(page.get_by_role("heading", name="Edit channel")).to_be_visible()
    page.get_by_label("Description").fill("Reports from the RIS")
    page.get_by_label("Idle timeout (s)").fill("120")
    page.get_by_role("button", name="Save to draft").click()
    expect(page.locator("[data-flash]")).to_contain_text("Saved to the draft of “Radiology in”")
    publish_in_browser(page, created.pk)
    expect(card(page, "Radiology in")).to_contain_text("Reports from the RIS")
    created.refresh_from_db()
    assert created.source_config == {"port": port, "idle_timeout_s": 120.0}

    page.get_by_role("link", name="Clone channel Radiology in").click()
    page.get_by_label("Name of the copy").fill("Radiology south")
    page.get_by_role("button", name="Create the copy").click()
    expect(page.locator('[data-field="source-port"] .invalid-feedback')).to_contain_text(
        "“Radiology in” already uses this port"
    )
    page.get_by_label("Port").fill(str(clone_port))
    page.get_by_role("button", name="Create the copy").click()
    copy = card(page, "Radiology south")
    expect(copy).to_contain_text("disabled")
    expect(copy).to_contain_text(f"MLLP on 127.0.0.1:{clone_port}")
    expect(copy).to_contain_text("PACS FHIR")

    card(page, "Radiology in").get_by_role("button", name="Archive").click()
    expect(page.locator("[data-flash]")).to_contain_text("archived")
    expect(card(page, "Radiology in")).to_have_count(0)
    page.get_by_role("link", name="Show archived").click()
    expect(card(page, "Radiology in")).to_contain_text("archived")

    created.refresh_from_db()
    assert created.archived and not created.enabled
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"channel.created", "channel.published", "channel.cloned", "channel.archived"} <= actions
    assert page.evaluate("() => window.__violations") == []
