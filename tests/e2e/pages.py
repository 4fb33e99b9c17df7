"""What every browser test does first: sign in through the login form, as a person does."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def sign_in(page, base: str, username: str, password: str, *, at: str = "/channels/") -> None:
    """Open ``at`` signed out (the login form is asked for it), sign in, land on it."""
    page.goto(f"{base}{at}")
    expect(page).to_have_url(re.compile(rf"/login/\?next={re.escape(at)}"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}{at}")
