"""The Dashboard is every role's landing page: numbers from the statistics, the queue, the
channels and destinations, and the newest errors masked for every role, also as JSON for the
polling fallback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from channels_app import stats
from channels_app.models import Delivery, Message, SourceHeartbeat
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db

PHI = "19620315"


@pytest.fixture
def traffic(redis_client):
    channel = factories.channel(40501, name="ADT feed")
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="EHR")
    now = datetime.now(UTC)
    tally = stats.Tally()
    tally.count(now, (channel.pk, 0), stats.RECEIVED, 5)
    tally.count(now, (channel.pk, 0), stats.PROCESSED, 4)
    tally.count(now, (channel.pk, 0), stats.ERROR_PREFIX + "map", 1)
    tally.count(now, (channel.pk, destination.pk), stats.DELIVERED, 4)
    for seconds in (0.02, 0.03, 0.04, 0.9):
        tally.latency(now, (channel.pk, destination.pk), stats.TOTAL, seconds)
    stats.write(tally)
    Message.objects.create(
        channel=channel,
        raw=b"MSH|^~\\&|x",
        message_type="ADT^A01",
        status=Message.Status.ERROR,
        error_stage="map",
        error_path="PID-7",
        error_detail=f"birth date '{PHI}' is not a date",
    )
    Delivery.objects.create(
        message=Message.objects.create(channel=channel, raw=b"MSH|x", message_type="ORU^R01"),
        destination=destination,
        status=Delivery.Status.PENDING,
    )
    return channel, destination


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ADMIN])
def test_the_landing_page_shows_the_numbers_and_masked_errors(client, traffic, role):
    client.force_login(factories.user(None, role))
    page = client.get("/").content.decode()
    # 15 min, not 1 min: the test may cross a minute's end
    assert 'data-window="15m" data-figure="received">5<' in page
    assert "ADT feed" in page and "EHR" in page
    assert "is not a date" in page and PHI not in page
    assert "vendor/uPlot.iife.min.js" in page and "console/dashboard.js" in page


def test_the_polling_fallback_returns_the_same_snapshot(client, traffic):
    channel, destination = traffic
    client.force_login(factories.user(None, Role.VIEWER))
    data = client.get("/dashboard/data/").json()
    [minute] = [w for w in data["windows"] if w["key"] == "15m"]
    assert minute["received"] == 5 and minute["delivered"] == 4 and minute["errored"] == 1
    assert minute["errors_by_stage"] == {"map": 1}
    assert minute["error_rate"] == 0.2
    assert 20 <= minute["latency"]["total"]["p50"] <= 60
    assert minute["latency"]["total"]["p99"] > 500
    assert data["queue"]["open"] == 1 and data["queue"]["unprocessed"] == 1
    assert len(data["hour"]["t"]) == 60 and sum(data["hour"]["received"]) == 5
    assert len(data["day"]["t"]) == 144
    [error] = data["errors"]
    assert error["stage"] == "map" and PHI not in error["reason"]


def test_a_destination_view_shows_only_its_own_traffic(client, traffic):
    channel, destination = traffic
    client.force_login(factories.user(None, Role.VIEWER))
    data = client.get(f"/dashboard/data/?destination={destination.pk}").json()
    [minute] = [w for w in data["windows"] if w["key"] == "15m"]
    assert minute["delivered"] == 4 and minute["received"] == 0
    assert [d["name"] for d in data["destinations"]] == ["EHR"]
    assert sum(data["day"]["delivered"]) == 4


def test_each_channel_shows_its_listener_state_and_connections(client, redis_client):
    listening = factories.channel(40511, name="Lab feed")
    taken = factories.channel(40512, name="Pharmacy feed")
    silent = factories.channel(40513, name="Radiology feed")
    http = factories.channel(0, name="Web feed", source_type="http", source_config={})
    beat(listening, state="listening", connections=3)
    beat(taken, state="error", error="could not bind: [Errno 98] address already in use")
    client.force_login(factories.user(None, Role.VIEWER))

    by_name = {c["name"]: c["listener"] for c in client.get("/dashboard/data/").json()["channels"]}
    assert by_name["Lab feed"] == {"state": "listening", "error": "", "connections": 3}
    assert by_name["Pharmacy feed"]["state"] == "error"
    assert "address already in use" in by_name["Pharmacy feed"]["error"]
    assert by_name["Radiology feed"]["state"] == "not running"
    assert by_name["Web feed"]["state"] == "live"

    page = client.get("/").content.decode()
    assert f'data-listener="{listening.pk}"' in page and "3 conn." in page
    assert "address already in use" in page
    assert f'data-listener="{silent.pk}"><span class="badge text-bg-warning">not running' in page
    assert f'data-listener="{http.pk}"><span class="badge text-bg-success">live' in page


def test_a_scoped_view_reads_the_listener_of_its_channel_only(client, redis_client):
    channel = factories.channel(40514, name="Lab feed")
    factories.channel(40515, name="Other feed")
    beat(channel, state="listening", connections=1)
    client.force_login(factories.user(None, Role.VIEWER))
    data = client.get(f"/dashboard/data/?channel={channel.pk}").json()
    assert [(c["name"], c["listener"]["state"]) for c in data["channels"]] == [
        ("Lab feed", "listening")
    ]


def beat(channel, **fields):
    return SourceHeartbeat.objects.create(
        process="host:1:dash", channel=channel, heartbeat_at=timezone.now(), **fields
    )
