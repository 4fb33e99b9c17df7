"""``/metrics`` for Prometheus, read with a viewer token: the queue as the database sees it at
scrape time (open deliveries per destination and status, their oldest age, messages waiting to
be processed, breaker and pause state). Three aggregate queries over partial indexes."""

from __future__ import annotations

from django.db import connection
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework.views import APIView

from channels_app.models import Destination
from console.roles import Role

OPEN_DELIVERIES = """
SELECT destination_id, status, count(*), extract(epoch FROM now() - min(created_at))
FROM channels_app_delivery WHERE status IN ('PENDING', 'SENDING', 'RETRY', 'QUEUED')
GROUP BY destination_id, status
"""
UNPROCESSED = """
SELECT channel_id, count(*) FROM channels_app_message WHERE status = 'RECEIVED' GROUP BY channel_id
"""


class QueueCollector:
    def collect(self):
        destinations = {
            d.pk: d
            for d in Destination.objects.select_related("channel").only(
                "id", "name", "paused", "breaker_state", "channel__name", "channel__paused"
            )
        }
        with connection.cursor() as cursor:
            cursor.execute(OPEN_DELIVERIES)
            open_rows = cursor.fetchall()
            cursor.execute(UNPROCESSED)
            unprocessed = cursor.fetchall()
        labels = ["channel", "destination"]
        depth = GaugeMetricFamily(
            "hub_deliveries_open", "Deliveries not yet settled", labels=[*labels, "status"]
        )
        age = GaugeMetricFamily(
            "hub_delivery_oldest_open_seconds", "Age of the oldest open delivery", labels=labels
        )
        oldest: dict[int, float] = {}
        for destination_id, status, count, seconds in open_rows:
            d = destinations.get(destination_id)
            if d is not None:
                depth.add_metric([d.channel.name, d.name, status], count)
                oldest[destination_id] = max(oldest.get(destination_id, 0.0), float(seconds))
        breaker = GaugeMetricFamily(
            "hub_destination_breaker_open",
            "1 while the circuit is open or half-open",
            labels=labels,
        )
        paused = GaugeMetricFamily(
            "hub_destination_paused",
            "1 while the destination or its channel is paused",
            labels=labels,
        )
        for d in destinations.values():
            key = [d.channel.name, d.name]
            age.add_metric(key, oldest.get(d.pk, 0.0))
            breaker.add_metric(key, int(d.breaker_state != Destination.BreakerState.CLOSED))
            paused.add_metric(key, int(d.paused or d.channel.paused))
        waiting = GaugeMetricFamily(
            "hub_messages_unprocessed",
            "Messages received, not yet processed",
            labels=["channel_id"],
        )
        for channel_id, count in unprocessed:
            waiting.add_metric([str(channel_id)], count)
        yield from (depth, age, breaker, paused, waiting)


class MetricsView(APIView):
    required_roles = {"get": Role.VIEWER}

    @extend_schema(responses={(200, CONTENT_TYPE_LATEST): {"type": "string"}})
    def get(self, request):
        registry = CollectorRegistry()
        registry.register(QueueCollector())
        return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
