"""What each channel's source is, and what the listener processes say it is doing.

The listener processes (`run_listeners`, any number on any host) upsert a `SourceHeartbeat` row
per source every ``HEARTBEAT_EVERY_S``; a row older than ``STALE_AFTER_S`` is a process that is
gone. HTTP sources have no listener: they take messages as soon as the channel is enabled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Now

from channels_app.models import Channel, Message, SourceHeartbeat

HEARTBEAT_EVERY_S = 2.0
STALE_AFTER_S = 10.0

State = Literal["listening", "error", "stopped", "starting", "not running", "live"]

# When processes disagree, the most useful word wins: one listening process serves the port.
_PRECEDENCE: tuple[str, ...] = ("listening", "error", "starting", "stopped")


@dataclass(frozen=True, slots=True)
class SourceState:
    state: State
    description: str = ""
    error: str = ""
    connections: int = 0
    last_message_at: datetime | None = None
    heartbeat_at: datetime | None = None
    processes: int = 0  # listener processes reporting on this source

    @property
    def running(self) -> bool:
        return self.state in ("listening", "live")


def describe_source(channel: Channel) -> str:
    """The source as what it is: "MLLP on 127.0.0.1:2575 (TLS)", "Files *.hl7 in /in"."""
    config = channel.source_config or {}
    if channel.source_type == Channel.SourceType.MLLP:
        host = config.get("host") or settings.HUB["LISTEN_HOST"]
        tls = " (TLS)" if config.get("tls") is not None else ""
        return f"MLLP on {host}:{config.get('port', '?')}{tls}"
    if channel.source_type == Channel.SourceType.FILE:
        return f"Files {config.get('glob') or '*.hl7'} in {config.get('directory', '?')}"
    if channel.source_type == Channel.SourceType.HTTP:
        json = " (custom JSON)" if config.get("inbound") == "json" else ""
        return f"HTTP POST /api/v1/channels/{channel.pk}/messages/{json}"
    return channel.get_source_type_display()


def source_states(channels: Iterable[Channel]) -> dict[int, SourceState]:
    """Each channel's source state, by channel id: one query for the heartbeats, one more for the
    last message of HTTP channels (which have no heartbeat)."""
    channels = list(channels)
    beats = _fresh_heartbeats([c.pk for c in channels if c.source_type != "http"])
    http_last = _last_messages([c.pk for c in channels if c.source_type == "http"])
    states = {}
    for channel in channels:
        description = describe_source(channel)
        if channel.source_type == Channel.SourceType.HTTP:
            state = "live" if channel.enabled else "stopped"
            states[channel.pk] = SourceState(
                state, description, last_message_at=http_last.get(channel.pk)
            )
        else:
            states[channel.pk] = _merged(channel, description, beats.get(channel.pk, []))
    return states


def _fresh_heartbeats(channel_ids: list[int]) -> dict[int, list[SourceHeartbeat]]:
    if not channel_ids:
        return {}
    fresh = SourceHeartbeat.objects.filter(
        channel_id__in=channel_ids, heartbeat_at__gte=Now() - timedelta(seconds=STALE_AFTER_S)
    )
    by_channel: dict[int, list[SourceHeartbeat]] = {}
    for beat in fresh:
        by_channel.setdefault(beat.channel_id, []).append(beat)
    return by_channel


def _last_messages(channel_ids: list[int]) -> dict[int, datetime]:
    if not channel_ids:
        return {}
    newest = Message.objects.filter(channel=OuterRef("pk")).order_by("-received_at")
    rows = Channel.objects.filter(pk__in=channel_ids).annotate(
        last=Subquery(newest.values("received_at")[:1])
    )
    return {pk: last for pk, last in rows.values_list("pk", "last") if last}


def _merged(channel: Channel, description: str, beats: list[SourceHeartbeat]) -> SourceState:
    if not beats:
        return SourceState("stopped" if not channel.enabled else "not running", description)
    best = min(beats, key=lambda b: _PRECEDENCE.index(b.state))
    lasts = [b.last_message_at for b in beats if b.last_message_at]
    return SourceState(
        best.state,
        description,
        error=best.error if best.state == "error" else "",
        connections=sum(b.connections for b in beats),
        last_message_at=max(lasts, default=None),
        heartbeat_at=max(b.heartbeat_at for b in beats),
        processes=sum(1 for b in beats if b.state == "listening"),
    )
