"""/metrics exposes the shared statistics as Prometheus counters and histograms, and the
exposition parses with prometheus-client's own parser."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from channels_app import stats
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db


def scrape(user) -> dict:
    client = Client()
    client.force_login(user)
    response = client.get("/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def samples(family, name: str, **labels) -> list:
    return [
        s
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_counters_and_histograms_come_from_the_shared_statistics(redis_client):
    channel = factories.channel(40601, name="Lab")
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="EHR")
    now = datetime.now(UTC)
    earlier = stats.Tally()  # another minute, as another process would have written it
    earlier.count(now - timedelta(minutes=3), (channel.pk, 0), stats.RECEIVED, 2)
    stats.write(earlier)
    tally = stats.Tally()
    scope, dest_scope = (channel.pk, 0), (channel.pk, destination.pk)
    tally.count(now, scope, stats.RECEIVED, 3)
    tally.count(now, scope, stats.PROCESSED, 4)
    tally.count(now, scope, stats.ERROR_PREFIX + "parse", 1)
    tally.count(now, dest_scope, stats.DELIVERED, 3)
    tally.count(now, dest_scope, stats.ATTEMPT_PREFIX + "success", 3)
    tally.count(now, dest_scope, stats.ATTEMPT_PREFIX + "transient", 2)
    for seconds in (0.004, 0.05, 2.0):
        tally.latency(now, dest_scope, stats.TOTAL, seconds)
        tally.latency(now, dest_scope, stats.DELIVER, seconds / 2)
    stats.write(tally)

    families = scrape(factories.user(None, Role.VIEWER))

    messages = families["hub_messages"]
    assert messages.type == "counter"
    [received] = samples(messages, "hub_messages_total", channel="Lab", status="received")
    assert received.value == 5
    [errors] = samples(families["hub_errors"], "hub_errors_total", channel="Lab", stage="parse")
    assert errors.value == 1
    attempts = families["hub_delivery_attempts"]
    [transient] = samples(attempts, "hub_delivery_attempts_total", outcome="transient")
    assert transient.labels["destination"] == "EHR" and transient.value == 2

    latency = families["hub_message_latency_seconds"]
    assert latency.type == "histogram"
    buckets = samples(latency, "hub_message_latency_seconds_bucket", destination="EHR")
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)
    assert float(buckets[-1].labels["le"]) == math.inf and buckets[-1].value == 3
    below_100ms = max(b.value for b in buckets if float(b.labels["le"]) <= 0.1)
    assert below_100ms == 2
    [count] = samples(latency, "hub_message_latency_seconds_count")
    [total] = samples(latency, "hub_message_latency_seconds_sum")
    assert count.value == 3 and total.value == pytest.approx(2.054)
    stage = families["hub_stage_latency_seconds"]
    [deliver_count] = samples(stage, "hub_stage_latency_seconds_count", stage="deliver")
    assert deliver_count.value == 3
    assert "hub_deliveries_open" in families  # the queue gauges are still there
