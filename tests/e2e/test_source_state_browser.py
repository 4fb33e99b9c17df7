"""In Chromium, under the real Content-Security-Policy: the Channels page shows each source as
what it is and as the listeners report it, and keeps up by itself: a port taken shows the OS
error, and once the port is free the same page turns to listening without a reload."""

from __future__ import annotations

import socket

import pytest
from playwright.sync_api import expect

from channels_app.management.commands.run_listeners import database_conninfo
from channels_app.models import Channel
from console.roles import Role, set_role
from tests import factories
from tests.support import ListenerThread, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-viewer-password"
VIOLATIONS = """() => window.__violations"""
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


def test_the_channels_page_follows_the_listeners(page, asgi_server, django_user_model, tmp_path):
    set_role(django_user_model.objects.create_user("watcher", password=PASSWORD), Role.VIEWER)
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    mllp = factories.channel(port, name="Lab results")
    files = factories.channel(
        0,
        name="Nightly batch",
        source_type=Channel.SourceType.FILE,
        source_config={"directory": str(tmp_path), "interval_s": 0.2},
    )
    http = factories.channel(0, name="Web orders", source_type=Channel.SourceType.HTTP)
    listeners = ListenerThread([], database_conninfo(), follow=True).start()
    try:
        page.add_init_script(WATCH)
        page.goto(f"{asgi_server}/channels/")
        page.get_by_label("Username").fill("watcher")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        lab = page.locator(f"#source-state-{mllp.pk}")
        expect(lab).to_contain_text(f"MLLP on 127.0.0.1:{port}")
        expect(lab).to_have_attribute("data-source-state", "error", timeout=15_000)
        expect(lab).to_contain_text("address already in use")
        expect(page.locator(f"#source-state-{files.pk}")).to_contain_text(
            f"Files *.hl7 in {tmp_path}"
        )
        expect(page.locator(f"#source-state-{files.pk}")).to_contain_text("polling", timeout=15_000)
        expect(page.locator(f"#source-state-{http.pk}")).to_contain_text("live")

        squatter.close()
        expect(lab).to_have_attribute("data-source-state", "listening", timeout=20_000)
        expect(lab).not_to_contain_text("address already in use")
        assert page.evaluate(VIOLATIONS) == []
    finally:
        squatter.close()
        listeners.stop()
