"""In Chromium, under the real Content-Security-Policy: an admin opens the System page from the
navigation and reads that data is sealed at rest and whom the app connects as."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from console.roles import Role, set_role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-admin-password"
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture
def admin_user(django_user_model):
    user = django_user_model.objects.create_user("chief", password=PASSWORD)
    set_role(user, Role.ADMIN)
    return user


def test_admin_reads_the_system_page(page, asgi_server, admin_user):
    page.add_init_script(WATCH)
    page.goto(f"{asgi_server}/login/")
    page.get_by_label("Username").fill("chief")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="System").click()
    expect(page).to_have_url(f"{asgi_server}/system/")
    expect(page.get_by_role("heading", name="System")).to_be_visible()
    # The suite seals with a key of its own from the environment (tests/environment.py).
    expect(page.locator("#encryption-state")).to_have_text("on")
    expect(page.locator("#encryption-source")).to_have_text("HUB_ENCRYPTION_KEYS")
    expect(page.locator("#role-name")).not_to_be_empty()
    assert page.evaluate("() => window.__violations") == []


def test_admin_sees_the_processes_and_the_api_docs_load_under_the_csp(
    page, asgi_server, admin_user
):
    from django.utils import timezone

    from channels_app.models import ProcessHeartbeat

    ProcessHeartbeat.objects.create(
        role="listeners",
        host="clinic-box",
        pid=31337,
        started_at=timezone.now(),
        restarts=1,
        sockets=["127.0.0.1:2575"],
    )
    page.add_init_script(WATCH)
    page.goto(f"{asgi_server}/login/")
    page.get_by_label("Username").fill("chief")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{asgi_server}/system/")
    listener = page.locator('#system-processes tr[data-role="listeners"]')
    expect(listener).to_contain_text("31337")
    expect(listener).to_contain_text("127.0.0.1:2575")
    expect(listener.locator(".restarts")).to_have_text("1")
    page.get_by_role("link", name="API", exact=True).click()
    expect(page).to_have_url(f"{asgi_server}/api/docs/")
    # Swagger UI, from the hub's own static files, has read the schema and listed the endpoints.
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible(timeout=30000)
    expect(page.locator("#swagger-ui")).to_contain_text("/api/v1/messages/")
    assert page.evaluate("() => window.__violations") == []


def test_the_navigation_collapses_on_a_narrow_screen(page, asgi_server, admin_user):
    page.set_viewport_size({"width": 390, "height": 800})
    page.add_init_script(WATCH)
    page.goto(f"{asgi_server}/login/")
    page.get_by_label("Username").fill("chief")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    messages = page.get_by_role("link", name="Messages", exact=True)
    expect(messages).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(messages).to_be_visible()
    messages.click()
    expect(page).to_have_url(f"{asgi_server}/messages/")
    assert page.evaluate("() => window.__violations") == []
