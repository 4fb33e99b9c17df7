"""In a real browser: the Dashboard counts a message sent over MLLP without a reload, streams an
error as it happens, and says so (and polls) when its websocket is cut, until it is back."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from adapters.transports.mllp import MLLPClient
from console.roles import Role, set_role
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-demo-password"
UNMAPPABLE = b"MSH|^~\\&|A|B|C|D|20240101||ZZZ^Z01|DASH-BAD|P|2.5.1\rZZZ|1\r"


@pytest.fixture
def hub(django_user_model, mllp_port, listener, celery_worker, fhir_sink):
    set_role(django_user_model.objects.create_user("watcher", password=PASSWORD), Role.VIEWER)
    channel = factories.channel(mllp_port, name="Admissions")
    factories.fhir_destination(channel, fhir_sink.url, name="EHR FHIR")
    listener(channel)
    return channel


class SocketSwitch:
    """Stands between the page and /ws/dashboard/: passes it through, or cuts it as a dropped
    network would (open sockets closed, new ones refused)."""

    def __init__(self, page) -> None:
        self.cut = False
        self.routes = []
        page.route_web_socket(re.compile(r"/ws/dashboard/"), self._handle)

    def _handle(self, route) -> None:
        if self.cut:
            route.close()
            return
        route.connect_to_server()
        self.routes.append(route)

    def cut_off(self) -> None:
        self.cut = True
        for route in self.routes:
            route.close()
        self.routes.clear()


def send(port: int, raw: bytes) -> None:
    with MLLPClient("127.0.0.1", port) as client:
        client.send(raw)


def test_the_dashboard_is_live_and_falls_back_to_polling(page, asgi_server, hub, mllp_port):
    switch = SocketSwitch(page)
    page.goto(f"{asgi_server}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill("watcher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{asgi_server}/")  # every role lands on the Dashboard
    live = page.locator("#live-state")
    expect(live).to_have_attribute("data-live", "yes")
    received = page.locator('#traffic [data-window="1h"][data-figure="received"]')
    delivered = page.locator('#traffic [data-window="1h"][data-figure="delivered"]')
    expect(received).to_have_text("0")

    send(mllp_port, factories.adt_a01("DASH-1"))
    expect(received).to_have_text("1", timeout=15_000)  # over the socket, no reload
    expect(delivered).to_have_text("1", timeout=20_000)
    expect(page.locator("#chart-throughput .uplot")).to_be_visible()
    listener_cell = page.locator(f'#channel-table [data-listener="{hub.pk}"]')
    expect(listener_cell).to_contain_text("listening", timeout=15_000)
    expect(listener_cell).to_contain_text("conn.")

    send(mllp_port, UNMAPPABLE)
    row = page.locator("#error-stream tbody tr").first
    expect(row).to_contain_text("ZZZ^Z01", timeout=15_000)
    expect(row).to_contain_text("map")
    expect(row).to_contain_text("Admissions")
    expect(page.locator('#traffic [data-window="1h"][data-figure="errors_by_stage"]')).to_have_text(
        "map 1", timeout=15_000
    )

    switch.cut_off()
    expect(page.locator("#live-fallback")).to_be_visible()
    expect(live).to_have_attribute("data-live", "no")
    send(mllp_port, factories.adt_a01("DASH-2"))
    expect(received).to_have_text("3", timeout=15_000)  # by polling

    switch.cut = False  # the network is back: the page reconnects by itself
    expect(live).to_have_attribute("data-live", "yes", timeout=15_000)
    expect(page.locator("#live-fallback")).to_be_hidden()
    row.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/messages/\d+/$"))
