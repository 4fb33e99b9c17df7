"""What the console reads about a channel's source: what it is, and the listeners' heartbeats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Channel, SourceHeartbeat
from channels_app.sources.status import describe_source, source_states
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


def beat(channel, process="host:1:a", age_s=0.0, **fields):
    row = SourceHeartbeat.objects.create(
        process=process,
        channel=channel,
        state=fields.pop("state", "listening"),
        heartbeat_at=timezone.now(),
        **fields,
    )
    if age_s:
        SourceHeartbeat.objects.filter(pk=row.pk).update(
            heartbeat_at=Now() - timedelta(seconds=age_s)
        )
    return row


def test_each_source_is_described_as_what_it_is():
    mllp = factories.channel(
        2575,
        source_config={
            "host": "10.0.0.5",
            "port": 2575,
            "tls": {"cert_file": "c.pem", "key_file": "k.pem"},
        },
    )
    plain = factories.channel(2576, source_config={"port": 2576})
    files = factories.channel(0, source_type="file", source_config={"directory": "/in"})
    http = factories.channel(0, source_type="http", source_config={})
    assert describe_source(mllp) == "MLLP on 10.0.0.5:2575 (TLS)"
    assert describe_source(plain) == "MLLP on 127.0.0.1:2576"
    assert describe_source(files) == "Files *.hl7 in /in"
    assert describe_source(http) == f"HTTP POST /api/v1/channels/{http.pk}/messages/"


def test_states_come_from_fresh_heartbeats_only():
    listening, failing, silent, stale = (factories.channel(p) for p in (1, 2, 3, 4))
    disabled = factories.channel(5, enabled=False)
    http = factories.channel(0, source_type="http", source_config={})
    beat(listening, connections=3, process="a")
    beat(listening, connections=2, process="b")
    beat(failing, state="error", error="[Errno 98] address already in use")
    beat(stale, age_s=60)

    states = source_states(Channel.objects.all())

    assert states[listening.pk].state == "listening"
    assert states[listening.pk].connections == 5
    assert states[listening.pk].processes == 2
    assert states[failing.pk].state == "error"
    assert "address already in use" in states[failing.pk].error
    assert states[silent.pk].state == "not running"
    assert states[stale.pk].state == "not running"
    assert states[disabled.pk].state == "stopped"
    assert states[http.pk].state == "live"


def test_one_listening_process_outranks_another_that_failed():
    channel = factories.channel(6)
    beat(channel, process="a", state="error", error="[Errno 98] address already in use")
    beat(channel, process="b", state="listening")
    assert source_states([channel])[channel.pk].state == "listening"


def test_states_cost_two_queries_whatever_the_number_of_channels():
    for port in range(10, 30):
        beat(factories.channel(port))
    for _ in range(5):
        factories.channel(0, source_type="http", source_config={})
    channels = list(Channel.objects.all())
    with CaptureQueriesContext(connection) as queries:
        source_states(channels)
    assert len(queries) == 2


def test_the_channels_page_shows_a_port_taken(viewer_user):
    channel = factories.channel(7)
    beat(
        channel,
        state="error",
        error="could not bind 127.0.0.1:7: [Errno 98] address already in use",
    )
    page = signed_in(viewer_user).get("/channels/").content.decode()
    assert 'data-source-state="error"' in page
    assert "[Errno 98] address already in use" in page
    assert "MLLP on 127.0.0.1:7" in page


def test_the_state_alone_is_served_for_the_page_to_poll(viewer_user):
    channel = factories.channel(8)
    client = signed_in(viewer_user)
    assert (
        'data-source-state="not running"'
        in client.get(f"/channels/{channel.pk}/source-state/").content.decode()
    )
    beat(channel, state="listening", connections=4)
    answer = client.get(f"/channels/{channel.pk}/source-state/").content.decode()
    assert 'data-source-state="listening"' in answer and "4 connections open" in answer
    assert f'hx-get="/channels/{channel.pk}/source-state/"' in answer
