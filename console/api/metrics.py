"""``/metrics`` for Prometheus, read with a viewer token.

Two collectors, both reading shared state, so every process (web, workers, listeners) gives one
view whichever web process is scraped:
- the queue as the database sees it at scrape time (open deliveries per destination and status,
  their oldest age, messages waiting to be processed, breaker and pause state): three aggregate
  queries over partial indexes (channels_app.stats.queue_state);
- traffic since Redis last started empty (channels_app.stats totals, one HGETALL): messages by
  status, errors by stage, delivery attempts by outcome, and latency histograms with the
  statistics' own log-spaced buckets. A Redis restart resets them, as counters may.
"""

from __future__ import annotations

import logging

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString
from redis.exceptions import RedisError
from rest_framework.views import APIView

from channels_app import histogram, stats
from channels_app.models import Channel, Destination
from channels_app.stats import queue_state
from console.roles import Role

log = logging.getLogger(__name__)

LABELS = ["channel", "destination"]


class QueueCollector:
    def collect(self):
        destinations = {
            d.pk: d
            for d in Destination.objects.select_related("channel").only(
                "id", "name", "paused", "breaker_state", "channel__name", "channel__paused"
            )
        }
        queue = queue_state()
        depth = GaugeMetricFamily(
            "hub_deliveries_open", "Deliveries not yet settled", labels=[*LABELS, "status"]
        )
        for (destination_id, status), count in queue.open.items():
            d = destinations.get(destination_id)
            if d is not None:
                depth.add_metric([d.channel.name, d.name, status], count)
        age = GaugeMetricFamily(
            "hub_delivery_oldest_open_seconds", "Age of the oldest open delivery", labels=LABELS
        )
        breaker = GaugeMetricFamily(
            "hub_destination_breaker_open",
            "1 while the circuit is open or half-open",
            labels=LABELS,
        )
        paused = GaugeMetricFamily(
            "hub_destination_paused",
            "1 while the destination or its channel is paused",
            labels=LABELS,
        )
        for d in destinations.values():
            key = [d.channel.name, d.name]
            age.add_metric(key, queue.oldest.get(d.pk, 0.0))
            breaker.add_metric(key, int(d.breaker_state != Destination.BreakerState.CLOSED))
            paused.add_metric(key, int(d.paused or d.channel.paused))
        waiting = GaugeMetricFamily(
            "hub_messages_unprocessed",
            "Messages received, not yet processed",
            labels=["channel_id"],
        )
        for channel_id, count in queue.unprocessed.items():
            waiting.add_metric([str(channel_id)], count)
        yield from (depth, age, breaker, paused, waiting)


# Counter name in the statistics -> (family, its label value).
MESSAGE_STATUSES = {
    stats.RECEIVED: "received",
    stats.PROCESSED: "processed",
    stats.FILTERED: "filtered",
}
DELIVERY_STATUSES = {
    stats.DELIVERED: "delivered",
    stats.FAILED: "failed",
    stats.RETRYING: "retrying",
}


class TrafficCollector:
    def collect(self):
        try:
            totals = stats.totals()
        except RedisError as exc:  # the queue gauges still answer; traffic is back with Redis
            log.warning("traffic statistics unavailable for /metrics: %s", exc)
            return
        names = _Names()
        messages = CounterMetricFamily(
            "hub_messages", "Messages by what happened to them", labels=["channel", "status"]
        )
        deliveries = CounterMetricFamily(
            "hub_deliveries", "Deliveries settled, by outcome", labels=[*LABELS, "status"]
        )
        errors = CounterMetricFamily(
            "hub_errors", "Errors by the stage they stopped at", labels=[*LABELS, "stage"]
        )
        attempts = CounterMetricFamily(
            "hub_delivery_attempts", "Delivery attempts by outcome", labels=[*LABELS, "outcome"]
        )
        latency = HistogramMetricFamily(
            "hub_message_latency_seconds",
            "From receipt to delivery, per destination",
            labels=LABELS,
        )
        stage_latency = HistogramMetricFamily(
            "hub_stage_latency_seconds",
            "Per stage: process (received to processed), deliver (processed to delivered)",
            labels=[*LABELS, "stage"],
        )
        for (channel_id, destination_id), cell in sorted(totals.items()):
            channel, destination = names.channel(channel_id), names.destination(destination_id)
            for name, count in cell.counts.items():
                if name in MESSAGE_STATUSES:
                    messages.add_metric([channel, MESSAGE_STATUSES[name]], count)
                elif name in DELIVERY_STATUSES:
                    deliveries.add_metric([channel, destination, DELIVERY_STATUSES[name]], count)
                elif name.startswith(stats.ERROR_PREFIX):
                    stage = name.removeprefix(stats.ERROR_PREFIX)
                    errors.add_metric([channel, destination, stage], count)
                elif name.startswith(stats.ATTEMPT_PREFIX):
                    outcome = name.removeprefix(stats.ATTEMPT_PREFIX)
                    attempts.add_metric([channel, destination, outcome], count)
            for metric, buckets in cell.histograms.items():
                observed = _buckets(buckets), cell.counts[stats.SUM_PREFIX + metric] / 1e6
                if metric == stats.TOTAL:
                    latency.add_metric([channel, destination], *observed)
                else:
                    stage_latency.add_metric([channel, destination, metric], *observed)
        yield from (messages, deliveries, errors, attempts, latency, stage_latency)


def _buckets(buckets: histogram.Histogram) -> list[tuple[str, int]]:
    return [(floatToGoString(le), count) for le, count in histogram.cumulative(buckets)]


class _Names:
    """Labels name channels and destinations as the console does; ids of deleted ones stay."""

    def __init__(self) -> None:
        self.channels = dict(Channel.objects.values_list("id", "name"))
        self.destinations = dict(Destination.objects.values_list("id", "name"))

    def channel(self, channel_id: int) -> str:
        return self.channels.get(channel_id, str(channel_id))

    def destination(self, destination_id: int) -> str:
        if not destination_id:
            return ""
        return self.destinations.get(destination_id, str(destination_id))


class MetricsView(APIView):
    required_roles = {"get": Role.VIEWER}

    @extend_schema(responses={(200, CONTENT_TYPE_LATEST): {"type": "string"}})
    def get(self, request):
        registry = CollectorRegistry()
        registry.register(QueueCollector())
        registry.register(TrafficCollector())
        return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
