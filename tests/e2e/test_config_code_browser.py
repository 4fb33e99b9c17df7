"""In Chromium: an admin exports a channel as YAML from its card on the Channels page, changes its
filter in the file, imports the file (the preview shows the change before anything is applied),
applies it with publishing, and the channel shows the new filter and a new version."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from channels_app.models import Channel
from console.roles import Role, set_role
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-admin-password"


@pytest.fixture
def channel(django_user_model):
    set_role(django_user_model.objects.create_user("keeper", password=PASSWORD), Role.ADMIN)
    channel = factories.channel(40891, name="Admissions")
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="EHR")
    channel.publish(note="first")
    return channel


def test_export_edit_and_import_a_channel(page, asgi_server, channel, tmp_path):
    page.goto(f"{asgi_server}/channels/")
    page.get_by_label("Username").fill("keeper")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    card = page.locator(f"#channel-{channel.pk}")
    expect(card).to_contain_text("version 1")

    with page.expect_download() as download:
        card.locator("[data-action=export-channel]").click()
    assert download.value.suggested_filename == "admissions.yaml"
    exported = Path(download.value.path()).read_text()
    assert "route_filter: ''" in exported
    edited = tmp_path / "admissions.yaml"
    edited.write_text(
        exported.replace("route_filter: ''", "route_filter: '%messageCode = ''ADT'''")
    )

    page.locator("[data-action=import-channels]").click()
    expect(page.get_by_role("heading", name="Import channels")).to_be_visible()
    page.locator("#import-file").set_input_files(str(edited))
    page.locator("#import-publish").check()
    page.locator("[data-action=preview-import]").click()
    change = page.locator('[data-change="channels[Admissions].route_filter"]')
    expect(change.locator("[data-before]")).to_have_text('""')
    expect(change.locator("[data-after]")).to_have_text("\"%messageCode = 'ADT'\"")
    assert Channel.objects.get(pk=channel.pk).route_filter == "", "nothing applied before Apply"

    page.locator("[data-action=apply-import]").click()
    expect(page.locator("[data-flash]")).to_have_text("Imported “Admissions” (version 2).")
    card = page.locator(f"#channel-{channel.pk}")
    expect(card.locator("[data-route-filter]")).to_have_text("%messageCode = 'ADT'")
    expect(card).to_contain_text("version 2")
    assert channel.current_version().note == "imported from YAML"
