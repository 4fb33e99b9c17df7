"""In Chromium, under the real Content-Security-Policy: an admin signs in, the pages load with no
policy violation, the audit log filters live and exports what it shows."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from console.models import AuditEvent
from console.roles import Role, set_role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-admin-password"
VIOLATIONS = """() => window.__violations"""
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


def test_admin_filters_and_exports_the_audit_log_without_csp_violations(
    page, asgi_server, admin_user
):
    page.add_init_script(WATCH)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{asgi_server}/login/")
    page.get_by_label("Username").fill("chief")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong username or password")).to_be_visible()
    page.get_by_label("Username").fill("chief")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{asgi_server}/")  # the Dashboard, charts drawn
    expect(page.locator("#chart-latency .uplot")).to_be_visible()
    assert page.evaluate(VIOLATIONS) == []

    page.get_by_role("link", name="Audit").click()
    expect(page).to_have_url(f"{asgi_server}/audit/")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(2)  # the failed sign-in and the sign-in

    page.get_by_label("Action").select_option("login.failed")  # htmx swaps the rows
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("login.failed")
    expect(page).to_have_url(re.compile(r"action=login.failed"))
    assert page.evaluate(VIOLATIONS) == []

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    exported = list(csv.reader(io.StringIO(text)))
    assert [r[5] for r in exported[1:]] == ["login.failed"]
    assert AuditEvent.objects.filter(action="audit.export", actor=admin_user).count() == 1

    page.goto(f"{asgi_server}/channels/")
    assert page.evaluate(VIOLATIONS) == []
    assert not [e for e in errors if "Content Security Policy" in e], errors

    # The watch works: an injected inline script is refused and reported.
    page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__ran = 1"; document.body.append(s); }"""
    )
    page.wait_for_function("() => window.__violations.length > 0")
    assert page.evaluate("() => window.__ran") is None
    assert any(v.startswith("script-src") for v in page.evaluate(VIOLATIONS))
