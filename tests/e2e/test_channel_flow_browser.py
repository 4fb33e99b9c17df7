"""Issue 10's "done when", in Chromium under the real Content-Security-Policy, with the listeners
following the configuration (as `run_listeners` runs them) and a real worker: an analyst creates a
channel with an MLLP source and a FHIR destination with a routing rule, a lab sends a final and a
preliminary ORU at once, and the pages say which went where and why. The port then moves in the
browser and the listener follows; a channel filter set in the browser filters a message; the
archived channel's port closes."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from channels_app.management.commands.run_listeners import database_conninfo
from channels_app.models import Channel, Message
from console.roles import Role, set_role
from tests import factories
from tests.e2e.pages import sign_in
from tests.support import (
    ListenerThread,
    free_port,
    port_open,
    publish_in_browser,
    send,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-analyst-password"
FINAL_REPORT = "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()"
RESULTS_ONLY = "%messageCode = 'ORU'"
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    e => window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


@pytest.fixture
def listeners(transactional_db):
    """The listeners of every enabled channel, following the configuration as it changes."""
    thread = ListenerThread([], database_conninfo(), follow=True).start()
    yield thread
    thread.stop()


@pytest.fixture
def analyst(django_user_model):
    set_role(django_user_model.objects.create_user("builder", password=PASSWORD), Role.ANALYST)


def create_channel(page, port: int) -> Channel:
    page.get_by_role("link", name="New channel").click()
    page.locator("#id_name").fill("Lab results")
    page.get_by_label("Port").fill(str(port))
    page.get_by_role("button", name="Create channel").click()
    expect(page.locator("[data-flash]")).to_contain_text("Channel “Lab results” created.")
    return Channel.objects.get(name="Lab results")


def add_routed_destination(page, channel: Channel, sink_url: str) -> None:
    page.locator(f"#channel-{channel.pk} [data-action=add-destination]").click()
    page.locator("[data-transport=fhir_rest]").click()
    page.locator("#id_name").fill("Final results")
    page.locator("#id_config-base_url").fill(sink_url)
    page.get_by_label("Route when").fill(FINAL_REPORT)
    page.get_by_role("button", name="Add to draft").click()
    expect(page).to_have_url(re.compile(r"/channels/#channel-\d+$"))
    publish_in_browser(page, channel.pk)


def edit_channel(page, channel: Channel, fill: dict[str, str]) -> None:
    page.get_by_role("link", name="Edit channel Lab results").click()
    for selector, value in fill.items():
        page.locator(selector).fill(value)
    page.get_by_role("button", name="Save to draft").click()
    expect(page.locator("[data-flash]")).to_contain_text("Saved to the draft of “Lab results”")
    publish_in_browser(page, channel.pk)


def source_state(page, channel: Channel):
    return page.locator(f"#source-state-{channel.pk}")


def sent_at_once(port: int, *messages: bytes) -> list[bytes]:
    with ThreadPoolExecutor(len(messages)) as pool:
        return list(pool.map(lambda raw: send(port, raw), messages))


def accepted(ack: bytes) -> bool:
    return b"MSA|AA|" in ack


def routing_row(page, destination_name: str):
    return page.locator("#routing tbody tr", has_text=destination_name)


def test_an_analyst_builds_a_routed_channel_and_sees_why_each_message_went_where(
    page, asgi_server, analyst, listeners, celery_worker, fhir_sink
):
    port, new_port = free_port(), free_port()
    page.add_init_script(WATCH)
    sign_in(page, asgi_server, "builder", PASSWORD)
    channel = create_channel(page, port)
    add_routed_destination(page, channel, fhir_sink.url)
    card = page.locator(f"#channel-{channel.pk}")
    expect(card.locator("[data-route-when]")).to_have_text(FINAL_REPORT)
    expect(source_state(page, channel)).to_have_attribute(
        "data-source-state", "listening", timeout=20_000
    )

    acks = sent_at_once(
        port,
        factories.oru_r01("LAB-FINAL", status="F"),
        factories.oru_r01("LAB-PRELIM", status="P"),
    )
    assert all(accepted(ack) for ack in acks), acks
    wait_for(lambda: fhir_sink.bundles(), what="the final ORU at the FHIR server")
    assert [b["identifier"]["value"] for b in fhir_sink.bundles()] == ["LAB-FINAL"]
    prelim = wait_for(
        lambda: Message.objects.filter(control_id="LAB-PRELIM", status="FILTERED").first(),
        what="the preliminary ORU filtered",
    )

    page.goto(f"{asgi_server}/messages/?channel={channel.pk}&status=FILTERED")
    rows = page.locator("#messages-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("LAB-PRELIM")
    expect(rows.first.locator("[data-filtered-because]")).to_contain_text("evaluated false")
    rows.first.get_by_role("link").click()
    expect(page).to_have_url(f"{asgi_server}/messages/{prelim.pk}/")
    expect(routing_row(page, "Final results")).to_contain_text("not routed")
    expect(routing_row(page, "Final results").locator("code")).to_have_text(FINAL_REPORT)
    expect(routing_row(page, "Final results")).to_contain_text("evaluated false")

    final = Message.objects.get(control_id="LAB-FINAL")
    page.goto(f"{asgi_server}/messages/{final.pk}/")
    expect(routing_row(page, "Final results")).to_contain_text("routed")
    expect(routing_row(page, "Final results")).to_contain_text("evaluated true")
    expect(page.locator(".card", has_text="Final results")).to_contain_text("Delivered")

    # The port moves in the browser; the listener follows without a restart.
    page.goto(f"{asgi_server}/channels/")
    edit_channel(page, channel, {"#id_source-port": str(new_port)})
    wait_for(lambda: not port_open(port), what=f"the old port {port} closed")
    assert accepted(send(new_port, factories.oru_r01("LAB-MOVED", status="F")))
    expect(source_state(page, channel)).to_contain_text(f"MLLP on 127.0.0.1:{new_port}")
    expect(source_state(page, channel)).to_have_attribute(
        "data-source-state", "listening", timeout=20_000
    )
    expect(source_state(page, channel)).to_contain_text("last message", timeout=20_000)

    # A channel filter set in the browser drops what it does not hold for, before any rule.
    edit_channel(page, channel, {"#id_route_filter": RESULTS_ONLY})
    expect(card.locator("[data-route-filter]")).to_have_text(RESULTS_ONLY)
    assert accepted(send(new_port, factories.adt_a01("ADT-DROPPED")))
    dropped = wait_for(
        lambda: Message.objects.filter(control_id="ADT-DROPPED", status="FILTERED").first(),
        what="the ADT filtered by the channel filter",
    )
    page.goto(f"{asgi_server}/messages/{dropped.pk}/")
    expect(routing_row(page, "Final results")).to_contain_text("not routed")
    expect(routing_row(page, "Final results")).to_contain_text("channel filter")
    expect(routing_row(page, "Final results").locator("code")).to_have_text(RESULTS_ONLY)

    # Archived: the port closes.
    page.goto(f"{asgi_server}/channels/")
    card.get_by_role("button", name="Archive").click()
    expect(page.locator("[data-flash]")).to_contain_text("archived")
    wait_for(lambda: not port_open(new_port), what=f"the archived channel's port {new_port} closed")
    assert page.evaluate("() => window.__violations") == []
