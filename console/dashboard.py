"""What the Dashboard shows, built once for the page, its polling fallback and its websocket.

Numbers and charts come from the per-minute statistics (channels_app.stats), never from a scan
of messages; the queue from three aggregate queries over partial indexes (the same ones
``/metrics`` exposes); the error stream from the newest errors, masked for every role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from django.db.models import OuterRef, Subquery
from django.urls import reverse

from channels_app import histogram, stats
from channels_app.events import ErrorRow
from channels_app.models import Alert, Attempt, Channel, Delivery, Destination, Message
from channels_app.sources.status import SourceState, source_states
from channels_app.stats import QueueState, queue_state
from console.message_phi import phi_by_message
from console.phi import UNKNOWN_PHI, MessagePhi, mask_free_text

WINDOWS: Final = (("1m", "1 min", 1), ("15m", "15 min", 15), ("1h", "1 hour", 60))
DAY_WINDOW: Final = ("24h", "24 h", 24 * 60)
QUANTILES: Final = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
DAY_STEP_MIN: Final = 10  # the day chart has one point per ten minutes
TABLE_WINDOW_MIN: Final = 15
RECENT_ERRORS: Final = 25


@dataclass(frozen=True, slots=True)
class Scope:
    """The whole hub, one channel, or one destination."""

    channel_id: int | None = None
    destination_id: int | None = None

    def keeps(self, scope: stats.Scope) -> bool:
        channel, destination = scope
        if self.destination_id is not None:
            return destination == self.destination_id
        return self.channel_id is None or channel == self.channel_id

    @classmethod
    def of(cls, params) -> Scope:
        return cls(_int_or_none(params.get("channel")), _int_or_none(params.get("destination")))


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


# --- the snapshot


def snapshot(scope: Scope = Scope(), *, errors: bool = True) -> dict:
    """Everything the page draws; ``errors`` adds the newest errors (the socket streams them)."""
    now = datetime.now(UTC)
    by_minute = day_of_minutes(now)
    current = stats.minute_of(now)
    data = {
        "generated_at": now.isoformat(),
        "windows": [
            {"key": key, "label": label, **figures(_last(by_minute, current, n), scope.keeps)}
            for key, label, n in WINDOWS + (DAY_WINDOW,)
        ],
        "hour": series(by_minute, current, 60, 1, scope.keeps),
        "day": series(by_minute, current, 24 * 60, DAY_STEP_MIN, scope.keeps),
        **tables(_last(by_minute, current, TABLE_WINDOW_MIN), scope),
        "alerts_open": Alert.objects.exclude(state=Alert.State.RESOLVED).count(),
    }
    if errors:
        data["errors"] = recent_errors(scope)
    return data


# Minutes more than an hour old change only by a late roll-up: read them once a minute per
# process, and the last hour every time (a snapshot is then a few dozen rows, not a day's).
_older: dict = {"until": None, "read_at": 0.0, "minutes": {}}
OLDER_FRESH_S: Final = 60.0


def day_of_minutes(now: datetime) -> dict[int, stats.Minute]:
    hour_ago = datetime.fromtimestamp(stats.minute_of(now - timedelta(minutes=59)), UTC)
    stale = now.timestamp() - _older["read_at"] > OLDER_FRESH_S
    if stale or _older["until"] != hour_ago:
        _older["minutes"] = stats.minutes(now - timedelta(minutes=DAY_WINDOW[2] - 1), hour_ago)
        _older.update(until=hour_ago, read_at=now.timestamp())
    return {**_older["minutes"], **stats.minutes(hour_ago)}


def _last(by_minute: dict[int, stats.Minute], current: int, n: int) -> list[stats.Minute]:
    first = current - (n - 1) * 60
    return [m for minute, m in by_minute.items() if first <= minute <= current]


def figures(minutes: list[stats.Minute], keep: Callable) -> dict:
    cell = stats.combined(minutes, keep)
    c = cell.counts
    errored = stats.errors_by_stage(cell)
    handled = c[stats.PROCESSED] + c[stats.FILTERED] + sum(errored.values())
    return {
        "received": c[stats.RECEIVED],
        "processed": c[stats.PROCESSED],
        "filtered": c[stats.FILTERED],
        "errored": sum(errored.values()),
        "errors_by_stage": errored,
        "delivered": c[stats.DELIVERED],
        "failed": c[stats.FAILED],
        "retrying": c[stats.RETRYING],
        "error_rate": round(sum(errored.values()) / handled, 4) if handled else 0.0,
        "latency": {
            metric: percentiles(cell.histograms.get(metric, {})) for metric in stats.METRICS
        },
    }


def percentiles(h: histogram.Histogram) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds (None without a sample)."""
    return {name: _ms(histogram.percentile(h, q)) for name, q in QUANTILES}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def series(
    by_minute: dict[int, stats.Minute], current: int, span_min: int, step_min: int, keep
) -> dict:
    """Chart columns (uPlot's shape): time, then one value per step."""
    step = step_min * 60
    last = current // step * step
    first = last - (span_min // step_min - 1) * step
    columns: dict[str, list] = {
        k: [] for k in ("t", "received", "delivered", "errors", "p50", "p95", "p99")
    }
    for start in range(first, last + step, step):
        minutes = [by_minute[m] for m in range(start, start + step, 60) if m in by_minute]
        cell = stats.combined(minutes, keep)
        columns["t"].append(start)
        columns["received"].append(cell.counts[stats.RECEIVED])
        columns["delivered"].append(cell.counts[stats.DELIVERED])
        columns["errors"].append(sum(stats.errors_by_stage(cell).values()))
        for name, value in percentiles(cell.histograms.get(stats.TOTAL, {})).items():
            columns[name].append(value)
    return columns


# --- the tables: channels and destinations with their queue


def tables(minutes: list[stats.Minute], scope: Scope) -> dict:
    channels = Channel.objects.only(
        "id", "name", "paused", "enabled", "source_type", "source_config"
    ).order_by("name")
    destinations = (
        Destination.objects.select_related("channel")
        .only("id", "name", "paused", "breaker_state", "channel__name", "channel__paused")
        .order_by("channel__name", "name")
    )
    if scope.channel_id is not None:
        channels = channels.filter(pk=scope.channel_id)
        destinations = destinations.filter(channel_id=scope.channel_id)
    if scope.destination_id is not None:
        destinations = destinations.filter(pk=scope.destination_id)
        channels = channels.filter(destinations__pk=scope.destination_id)
    queue = queue_state()
    sources = source_states(channels)
    return {
        "channels": [_channel_row(c, minutes, queue, sources[c.pk]) for c in channels],
        "destinations": [_destination_row(d, minutes, queue) for d in destinations],
        "queue": {
            "open": sum(queue.open_by_destination(d.pk) for d in destinations),
            "oldest_s": max((queue.oldest.get(d.pk, 0.0) for d in destinations), default=0.0),
            "unprocessed": sum(queue.unprocessed.get(c.pk, 0) for c in channels),
        },
    }


def _channel_row(channel: Channel, minutes, queue: QueueState, source: SourceState) -> dict:
    f = figures(minutes, lambda s: s[0] == channel.pk)
    return {
        "id": channel.pk,
        "name": channel.name,
        "paused": channel.paused,
        "received": f["received"],
        "errored": f["errored"],
        "delivered": f["delivered"],
        "error_rate": f["error_rate"],
        "p95_ms": f["latency"][stats.TOTAL]["p95"],
        "unprocessed": queue.unprocessed.get(channel.pk, 0),
        "listener": {
            "state": source.state,
            "error": source.error,
            "connections": source.connections,
        },
        "url": f"{reverse('home')}?channel={channel.pk}",
    }


def _destination_row(destination: Destination, minutes, queue: QueueState) -> dict:
    f = figures(minutes, lambda s: s[1] == destination.pk)
    return {
        "id": destination.pk,
        "name": destination.name,
        "channel": destination.channel.name,
        "paused": destination.paused or destination.channel.paused,
        "breaker": destination.breaker_state,
        "delivered": f["delivered"],
        "failed": f["failed"],
        "retrying": f["retrying"],
        "p95_ms": f["latency"][stats.TOTAL]["p95"],
        "open": queue.open_by_destination(destination.pk),
        "oldest_s": round(queue.oldest.get(destination.pk, 0.0), 1),
        "url": f"{reverse('home')}?destination={destination.pk}",
    }


# --- the error stream


def stream_rows(errors: list[ErrorRow], names: Names) -> list[dict]:
    """Errors as the stream shows them to every role: the reasons keep their words, never a
    patient's values, whether quoted or not (each message's own PHI values, read once for the
    batch, and PHI-looking patterns: console.phi)."""
    phi = phi_by_message({e["message_id"] for e in errors})
    return [stream_row(e, names, phi.get(e["message_id"], UNKNOWN_PHI)) for e in errors]


def stream_row(error: ErrorRow, names: Names, phi: MessagePhi) -> dict:
    return {
        "at": error["at"],
        "message_id": error["message_id"],
        "url": reverse("message", args=[error["message_id"]]),
        "channel_id": error["channel_id"],
        "channel": names.channel(error["channel_id"]),
        "destination": names.destination(error["destination_id"]),
        "message_type": error["message_type"],
        "stage": error["stage"],
        "path": mask_free_text(error["path"], phi),
        "reason": mask_free_text(error["reason"], phi),
    }


def in_scope(error: ErrorRow, scope: Scope) -> bool:
    if scope.destination_id is not None:
        return error["destination_id"] == scope.destination_id
    return scope.channel_id is None or error["channel_id"] == scope.channel_id


class Names:
    """Channel and destination names, read once and again only for an id not seen yet."""

    def __init__(self) -> None:
        self.channels: dict[int, str] = {}
        self.destinations: dict[int, str] = {}

    def channel(self, channel_id: int) -> str:
        if channel_id not in self.channels:
            self.channels = dict(Channel.objects.values_list("id", "name"))
        return self.channels.get(channel_id, f"channel {channel_id}")

    def destination(self, destination_id: int) -> str:
        if not destination_id:
            return ""
        if destination_id not in self.destinations:
            self.destinations = dict(Destination.objects.values_list("id", "name"))
        return self.destinations.get(destination_id, f"destination {destination_id}")


def recent_errors(scope: Scope = Scope(), limit: int = RECENT_ERRORS) -> list[dict]:
    """The newest errors (messages stopped in a stage, deliveries that failed), newest first."""
    messages = Message.objects.filter(status=Message.Status.ERROR).only(
        "id",
        "channel_id",
        "received_at",
        "processed_at",
        "message_type",
        "error_stage",
        "error_path",
        "error_detail",
    )
    last_attempt = Attempt.objects.filter(delivery=OuterRef("pk")).order_by("-number")
    failed = (
        Delivery.objects.filter(status=Delivery.Status.FAILED)
        .select_related("message")
        .only(
            "id",
            "destination_id",
            "last_error",
            "created_at",
            "message__id",
            "message__channel_id",
            "message__message_type",
        )
        .annotate(failed_at=Subquery(last_attempt.values("started_at")[:1]))
    )
    if scope.channel_id is not None:
        messages = messages.filter(channel_id=scope.channel_id)
        failed = failed.filter(message__channel_id=scope.channel_id)
    if scope.destination_id is not None:
        messages = messages.none()
        failed = failed.filter(destination_id=scope.destination_id)
    rows = [_message_error(m) for m in messages.order_by("-id")[:limit]]
    rows += [_delivery_error(d) for d in failed.order_by("-id")[:limit]]
    rows.sort(key=lambda r: r["at"], reverse=True)
    return stream_rows(rows[:limit], Names())


def _message_error(m: Message) -> ErrorRow:
    return {
        "at": (m.processed_at or m.received_at).isoformat(),
        "message_id": m.id,
        "channel_id": m.channel_id,
        "destination_id": 0,
        "message_type": m.message_type,
        "stage": m.error_stage,
        "path": m.error_path,
        "reason": m.error_detail[:500],
    }


def _delivery_error(d: Delivery) -> ErrorRow:
    return {
        "at": (d.failed_at or d.created_at).isoformat(),
        "message_id": d.message.id,
        "channel_id": d.message.channel_id,
        "destination_id": d.destination_id,
        "message_type": d.message.message_type,
        "stage": "deliver",
        "path": "",
        "reason": d.last_error[:500],
    }


# --- how figures read (static/console/dashboard.js formats them the same way)

FIGURES: Final = (
    ("received", "Received"),
    ("processed", "Processed"),
    ("filtered", "Filtered"),
    ("errored", "Errored"),
    ("errors_by_stage", "Errors by stage"),
    ("delivered", "Delivered"),
    ("failed", "Failed"),
    ("retrying", "Retrying"),
    ("error_rate", "Error rate"),
    ("total.p50", "p50 received → delivered"),
    ("total.p95", "p95 received → delivered"),
    ("total.p99", "p99 received → delivered"),
    ("process.p95", "p95 received → processed"),
    ("deliver.p95", "p95 processed → delivered"),
)


def figure_rows(data: dict) -> list[dict]:
    """The traffic table: one row per figure, one cell per window, as the page first shows it."""
    return [
        {
            "key": key,
            "label": label,
            "cells": [(w["key"], display(key, value_of(w, key))) for w in data["windows"]],
        }
        for key, label in FIGURES
    ]


def value_of(window: dict, key: str):
    if "." in key:
        metric, quantile = key.split(".")
        return window["latency"][metric][quantile]
    return window[key]


def display(key: str, value) -> str:
    if key == "errors_by_stage":
        return " · ".join(f"{stage} {n}" for stage, n in sorted(value.items())) or "—"
    if value is None:
        return "—"
    if key == "error_rate":
        return f"{value * 100:.1f} %"
    if "." in key:
        return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"
    return str(value)
