"""A "listener down" rule opens one alert when an enabled MLLP or file channel's source is in
error or not running (its port taken, its heartbeat stale), and resolves it once when the source
listens again; HTTP and disabled channels never count."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.db.models.functions import Now
from django.utils import timezone

from channels_app import alerts
from channels_app.management.commands.run_listeners import database_conninfo
from channels_app.models import Alert, AlertRule, Channel, SourceHeartbeat
from channels_app.sources.status import source_states
from console.roles import Role
from tests import factories
from tests.support import ListenerThread, free_port, wait_for


def beat(channel, state="listening", age_s=0.0, **fields) -> SourceHeartbeat:
    row, _ = SourceHeartbeat.objects.update_or_create(
        process="host:1:alerts",
        channel=channel,
        defaults={"state": state, "heartbeat_at": timezone.now(), **fields},
    )
    if age_s:
        SourceHeartbeat.objects.filter(pk=row.pk).update(
            heartbeat_at=Now() - timedelta(seconds=age_s)
        )
    return row


def listener_rule(**scope) -> AlertRule:
    return AlertRule.objects.create(
        name="listener down",
        kind=AlertRule.Kind.LISTENER_DOWN,
        notify_emails="oncall@example.org",
        **scope,
    )


@pytest.mark.django_db
def test_a_stale_heartbeat_opens_once_and_listening_again_resolves_once(redis_client):
    channel = factories.channel(40801, name="Lab")
    rule = listener_rule(channel=channel)
    beat(channel)
    assert alerts.evaluate() == []

    beat(channel, age_s=60)  # the listener process is gone
    [(alert, event)] = alerts.evaluate()
    assert event == alerts.OPENED and alert.value == 1
    assert "MLLP on 127.0.0.1:40801: not running" in alert.detail
    assert alerts.evaluate() == [] and alerts.evaluate() == []  # still down: no flood
    assert len(mail.outbox) == 1 and "opened: listener down" in mail.outbox[0].subject

    beat(channel)
    [(resolved, event)] = alerts.evaluate()
    assert event == alerts.RESOLVED and resolved.pk == alert.pk
    assert alerts.evaluate() == []
    assert len(mail.outbox) == 2 and Alert.objects.get(rule=rule).state == Alert.State.RESOLVED


@pytest.mark.django_db
def test_everywhere_counts_enabled_listened_channels_and_a_channel_rule_only_its_own(
    redis_client,
):
    failing = factories.channel(40802, name="Pharmacy")
    healthy = factories.channel(40803, name="Radiology")
    factories.channel(40804, enabled=False)  # stopped on purpose
    factories.channel(0, source_type="http", source_config={})  # no listener to lose
    beat(failing, state="error", error="[Errno 98] address already in use")
    beat(healthy)
    everywhere = AlertRule(kind=AlertRule.Kind.LISTENER_DOWN)
    own = AlertRule(kind=AlertRule.Kind.LISTENER_DOWN, channel=healthy)
    context = alerts._context(timezone.now(), 5)

    reading = alerts.measure(everywhere, context)
    assert reading.firing and reading.value == 1
    assert "error ([Errno 98] address already in use)" in reading.detail
    assert not alerts.measure(own, context).firing


@pytest.mark.django_db
def test_the_rule_form_needs_a_threshold_for_figures_only(client):
    client.force_login(factories.user(None, Role.ANALYST))
    form = {"name": "any listener down", "kind": "listener_down", "window_min": 5}
    assert client.post("/alerts/rules/new/", {**form, "kind": "errors"}).status_code == 400
    assert client.post("/alerts/rules/new/", form).status_code == 302
    rule = AlertRule.objects.get(name="any listener down")
    assert rule.kind == AlertRule.Kind.LISTENER_DOWN and rule.threshold == 0


@pytest.mark.django_db(transaction=True)
def test_a_port_taken_opens_the_alert_and_its_release_resolves_it(redis_client):
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    listeners = ListenerThread([], database_conninfo(), follow=True).start()
    try:
        channel = factories.channel(port, name="ADT")
        listener_rule(channel=channel)
        wait_for(lambda: state_of(channel) == "error", timeout=15, what="the bind error")
        [(alert, event)] = alerts.evaluate()
        assert event == alerts.OPENED and "address already in use" in alert.detail
        assert alerts.evaluate() == []

        squatter.close()
        wait_for(lambda: state_of(channel) == "listening", timeout=15, what="the retry")
        [(resolved, event)] = alerts.evaluate()
        assert event == alerts.RESOLVED and resolved.pk == alert.pk
        assert len(mail.outbox) == 2
    finally:
        squatter.close()
        listeners.stop()


def state_of(channel: Channel) -> str:
    return source_states([channel])[channel.pk].state
