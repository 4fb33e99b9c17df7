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
