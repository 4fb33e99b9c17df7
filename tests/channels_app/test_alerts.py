"""An alert opens once, notifies once (email outbox and a real local webhook server, signed), stays
quiet while its rule keeps firing, and resolves once with one more notice."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from channels_app import alerts, stats
from channels_app.models import Alert, AlertRule, Delivery, Destination, Message
from tests import factories

pytestmark = pytest.mark.django_db

SECRET = "webhook-secret-for-tests"


class WebhookReceiver:
    """A local HTTP server that keeps every POST it gets (headers and body)."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.received]


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.server.shutdown()


def errors_now(channel_id: int, n: int) -> None:
    tally = stats.Tally()
    tally.count(datetime.now(UTC), (channel_id, 0), stats.ERROR_PREFIX + "map", n)
    stats.write(tally)


def test_an_alert_opens_once_notifies_once_and_resolves_once(redis_client, webhook):
    channel = factories.channel(40701, name="Lab")
    rule = AlertRule.objects.create(
        name="Lab errors",
        kind=AlertRule.Kind.ERRORS,
        channel=channel,
        threshold=2,
        window_min=5,
        notify_emails="oncall@example.org",
        webhook_url=webhook.url,
        webhook_secret=SECRET,
    )
    errors_now(channel.pk, 1)
    assert alerts.evaluate() == []  # below the threshold

    errors_now(channel.pk, 2)
    [(alert, event)] = alerts.evaluate()
    assert event == alerts.OPENED and alert.state == Alert.State.OPEN and alert.value == 3
    assert len(mail.outbox) == 1 and "opened: Lab errors" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["oncall@example.org"]
    [(headers, body)] = webhook.received
    assert headers["X-Hub-Signature-256"] == alerts.signature(SECRET, body)
    assert json.loads(body)["event"] == "opened"

    errors_now(channel.pk, 5)  # still firing, louder: no flood
    assert alerts.evaluate() == []
    assert alerts.acknowledge(alert, None)
    assert alerts.evaluate() == []
    assert Alert.objects.count() == 1 and len(mail.outbox) == 1 and len(webhook.received) == 1

    rule.threshold = 100  # the condition is over
    rule.save()
    [(resolved, event)] = alerts.evaluate()
    assert event == alerts.RESOLVED and resolved.pk == alert.pk
    assert Alert.objects.get().state == Alert.State.RESOLVED
    assert alerts.evaluate() == []
    assert len(mail.outbox) == 2 and webhook.events() == ["opened", "resolved"]


def test_one_unresolved_alert_per_rule_even_when_two_evaluations_race(redis_client):
    channel = factories.channel(40702)
    rule = AlertRule.objects.create(
        name="any error", kind=AlertRule.Kind.ERRORS, channel=channel, threshold=1
    )
    Alert.objects.create(rule=rule)  # another beat opened it a moment ago
    errors_now(channel.pk, 1)
    assert alerts.evaluate() == []
    assert Alert.objects.count() == 1


def context_at(now: datetime) -> alerts.Context:
    return alerts._context(now, 15)


def test_inactivity_fires_only_in_active_hours_and_only_without_that_type(redis_client):
    channel = factories.channel(40703)
    rule = AlertRule(
        name="no admissions",
        kind=AlertRule.Kind.INACTIVITY,
        channel=channel,
        message_type="ADT^A01",
        window_min=15,
    )
    now = datetime.now(UTC)
    assert alerts.measure(rule, context_at(now)).firing
    tally = stats.Tally()
    tally.count(now, (channel.pk, 0), stats.TYPE_PREFIX + "ORU^R01")
    stats.write(tally)
    assert alerts.measure(rule, context_at(now)).firing  # another type does not count
    tally.count(now, (channel.pk, 0), stats.TYPE_PREFIX + "ADT^A01")
    stats.write(tally)
    assert not alerts.measure(rule, context_at(now)).firing

    quiet = AlertRule(name="night", kind=AlertRule.Kind.INACTIVITY, channel=channel)
    local = (timezone.localtime(now) + timedelta(hours=2)).time()  # two hours from now
    quiet.active_from, quiet.active_until = local, time((local.hour + 1) % 24, local.minute)
    other_channel = factories.channel(40704)
    quiet.channel = other_channel
    reading = alerts.measure(quiet, context_at(now))
    assert not reading.firing and "active hours" in reading.detail


def test_queue_and_breaker_rules_read_the_database_now(redis_client):
    channel = factories.channel(40705)
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    message = Message.objects.create(channel=channel, raw=b"MSH|x")
    Delivery.objects.create(
        message=message,
        destination=destination,
        created_at=datetime.now(UTC) - timedelta(minutes=10),
    )
    depth = AlertRule(kind=AlertRule.Kind.QUEUE_DEPTH, destination=destination, threshold=1)
    age = AlertRule(kind=AlertRule.Kind.OLDEST_AGE, channel=channel, threshold=300)
    breaker = AlertRule(kind=AlertRule.Kind.BREAKER_OPEN, destination=destination)
    now = datetime.now(UTC)
    assert alerts.measure(depth, context_at(now)).firing
    assert alerts.measure(age, context_at(now)).firing
    assert not alerts.measure(breaker, context_at(now)).firing
    Destination.objects.filter(pk=destination.pk).update(breaker_state="open")
    assert alerts.measure(breaker, context_at(now)).firing
