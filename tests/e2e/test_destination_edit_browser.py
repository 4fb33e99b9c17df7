"""In Chromium, under the real Content-Security-Policy: an analyst edits a webhook destination
(timeout, a header, its bearer token) from the Channels page, sees it saved, and never sees the
secret again; the transport's fields follow the choices made, with no policy violation."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet
from playwright.sync_api import expect

from channels_app.models import Destination
from channels_app.sealing import SECRET_MARKER, open_config
from console.models import AuditEvent
from console.roles import Role, set_role
from tests import factories
from tests.support import publish_in_browser

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-analyst-password"
KEY = Fernet.generate_key().decode()
TOKEN = "tok-STORED-e2e-7731"
NEW_TOKEN = "tok-ROTATED-e2e-9902"
VIOLATIONS = """() => window.__violations"""
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture(autouse=True)
def sealed(monkeypatch, settings):
    """Secrets sealed, with the same key in this process and in the server (started after)."""
    monkeypatch.setenv("HUB_ENCRYPTION_KEYS", KEY)
    settings.HUB_ENCRYPTION_KEYS = [KEY]


@pytest.fixture
def hook(django_user_model):
    set_role(django_user_model.objects.create_user("integrator", password=PASSWORD), Role.ANALYST)
    return Destination.objects.create(
        channel=factories.channel(40701, name="Billing feed"),
        name="Billing hook",
        transport="webhook",
        config={
            "url": "https://billing.example/in",
            "headers": {"X-Source": "hub"},
            "auth": {"type": "bearer", "token": TOKEN},
        },
        timeout_s=30,
    )


def test_analyst_changes_timeout_header_and_secret(page, asgi_server, hook):
    page.add_init_script(WATCH)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{asgi_server}/channels/")
    page.get_by_label("Username").fill("integrator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{asgi_server}/channels/")

    page.get_by_role("link", name="Edit Billing hook").click()
    expect(page).to_have_url(f"{asgi_server}/destinations/{hook.pk}/edit/")
    expect(page.get_by_role("heading", name="Edit destination")).to_be_visible()
    token = page.get_by_label("Token")
    expect(token).to_have_value("")  # write-only: the stored secret is not in the page
    expect(token).to_have_attribute("placeholder", "stored — leave blank to keep")
    assert TOKEN not in page.content()

    # The auth select shows the chosen variant's fields only (static JS, no inline script).
    auth = page.get_by_label("Auth")
    auth.select_option("basic")
    expect(page.get_by_label("Username")).to_be_visible()
    expect(token).to_be_hidden()
    auth.select_option("bearer")
    expect(token).to_be_visible()
    expect(page.get_by_label("Username")).to_be_hidden()

    page.get_by_label("Timeout (s)").fill("12")
    page.get_by_label("Headers").fill('{"X-Source": "hub", "X-Env": "prod"}')
    token.fill(NEW_TOKEN)
    page.get_by_role("button", name="Save to draft").click()

    expect(page).to_have_url(re.compile(rf"/channels/#channel-{hook.channel_id}$"))
    expect(page.get_by_text("Destination “Billing hook” saved to the draft")).to_be_visible()
    expect(page.locator(f"#destination-{hook.pk}")).to_contain_text("timeout 30 s")  # not yet
    publish_in_browser(page, hook.channel_id)
    expect(page.locator(f"#destination-{hook.pk}")).to_contain_text("timeout 12 s")

    hook.refresh_from_db()
    assert hook.timeout_s == 12
    opened = open_config("webhook", hook.config)
    assert opened["headers"] == {"X-Source": "hub", "X-Env": "prod"}
    assert opened["auth"]["token"] == NEW_TOKEN
    assert NEW_TOKEN not in str(hook.config)  # sealed at rest
    event = AuditEvent.objects.get(action="channel.published")
    assert set(event.detail["changes"]) == {
        "destinations.Billing hook.timeout_s",
        "destinations.Billing hook.config.auth.token",
        "destinations.Billing hook.config.headers.X-Env",
    }
    assert NEW_TOKEN not in str(event.detail) and TOKEN not in str(event.detail)

    # Back on the form: the new values, and still no secret (header values are secrets too).
    page.get_by_role("link", name="Edit Billing hook").click()
    expect(page.get_by_label("Timeout (s)")).to_have_value("12")
    expect(page.get_by_label("Headers")).to_contain_text(f'"X-Env": "{SECRET_MARKER}"')
    expect(page.get_by_label("Token")).to_have_value("")
    assert NEW_TOKEN not in page.content()

    # Adding one: choosing another transport swaps in its fields (htmx), under the same policy.
    page.goto(f"{asgi_server}/channels/")
    page.get_by_role("link", name="Add destination").click()
    page.get_by_role("link", name="Choose HTTP webhook").click()
    expect(page.get_by_label("URL")).to_be_visible()
    page.get_by_label("Transport").select_option("file")
    expect(page.get_by_label("Directory")).to_be_visible()
    expect(page.get_by_label("URL")).to_have_count(0)

    assert page.evaluate(VIOLATIONS) == []
    assert not [e for e in errors if "Content Security Policy" in e], errors
