"""Channels: each source with its true state, its destinations, their delivery health, the last
hour's traffic and the queue; filtered by tag, archived ones on request.

Operators pause and resume a destination or a whole channel here (POST, audited); the work is
done by channels_app.pipeline.control, which the REST API calls too.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from channels_app import drafts
from channels_app.models import Channel, ChannelDraft, DedupeEntry, Destination, Message
from channels_app.pipeline import control
from channels_app.sources.status import source_states
from console import audit
from console.access import requires
from console.roles import Role, has_role


@requires(Role.VIEWER)
def channel_list(request):
    archived = request.GET.get("archived") == "1"
    tag = request.GET.get("tag", "").replace("\x00", "").strip().lower()
    channels = Channel.objects.filter(archived_at__isnull=not archived)
    if tag:
        channels = channels.filter(tags__contains=[tag])
    context = _context(request, channels)
    context.update(archived=archived, tag=tag, all_tags=_tags_in_use(archived))
    return render(request, "channels/list.html", context)


def _tags_in_use(archived: bool) -> list[str]:
    rows = Channel.objects.filter(archived_at__isnull=not archived).values_list("tags", flat=True)
    return sorted({tag for tags in rows for tag in tags or ()})


@requires(Role.VIEWER)
def channel_source_state(request, pk: int):
    """The channel's source state alone: the Channels page polls it (htmx) to stay truthful."""
    channel = get_object_or_404(Channel, pk=pk)
    state = source_states([channel])[channel.pk]
    return render(request, "channels/_source_state.html", {"channel": channel, "state": state})


@requires(Role.OPERATOR)
@require_POST
def destination_pause(request, pk: int):
    return _set_paused(request, get_object_or_404(Destination, pk=pk), paused=True)


@requires(Role.OPERATOR)
@require_POST
def destination_resume(request, pk: int):
    return _set_paused(request, get_object_or_404(Destination, pk=pk), paused=False)


@requires(Role.OPERATOR)
@require_POST
def channel_pause(request, pk: int):
    return _set_paused(request, get_object_or_404(Channel, pk=pk), paused=True)


@requires(Role.OPERATOR)
@require_POST
def channel_resume(request, pk: int):
    return _set_paused(request, get_object_or_404(Channel, pk=pk), paused=False)


def _set_paused(request, target: Channel | Destination, *, paused: bool):
    kind = "channel" if isinstance(target, Channel) else "destination"
    detail = {"name": str(target)}
    if paused:
        control.pause(target)
    else:
        detail["released"] = len(control.resume(target))
    action = f"{kind}.{'paused' if paused else 'resumed'}"
    audit.record(request, action, target=f"{kind}:{target.pk}", detail=detail)
    if not request.htmx:
        return redirect("channels")
    channel_id = target.pk if kind == "channel" else target.channel_id
    context = _context(request, Channel.objects.filter(pk=channel_id))
    return render(request, "channels/_channel.html", {**context, "c": context["channels"][0]})


def _context(request, channels) -> dict:
    """Each channel with its source state, its last hour's traffic and its queue: a fixed number
    of queries whatever the number of channels, none reading a message body."""
    channels = list(channels.prefetch_related("destinations", "versions"))
    ids = [c.pk for c in channels]
    duplicates = dict(
        DedupeEntry.objects.filter(channel__in=ids, duplicates__gt=0)
        .values("channel")
        .annotate(n=Coalesce(Sum("duplicates"), 0))
        .values_list("channel", "n")
    )
    traffic = _last_hour(ids)
    unmapped = _unmapped(ids)
    drafted = {d.channel_id: d for d in ChannelDraft.objects.filter(channel__in=ids)}
    destinations = [d for c in channels for d in c.destinations.all()]
    health = control.destinations_health(destinations)
    states = source_states(channels)
    for channel in channels:
        channel.source_state = states[channel.pk]
        channel.duplicates = duplicates.get(channel.id, 0)
        channel.received, channel.errors, waiting = traffic.get(channel.pk, (0, 0, 0))
        channel.version = max((v.number for v in channel.versions.all()), default=None)
        # Only a channel with a draft costs its diff (a query for its destinations).
        draft = drafted.get(channel.pk)
        channel.draft_changes = (
            len(drafts.diff(drafts.live_snapshot(channel), draft.snapshot)) if draft else None
        )
        for destination in channel.destinations.all():
            destination.health = health[destination.pk]
        channel.waiting = waiting
        channel.unmapped = unmapped.get(channel.pk, [])
        channel.queue = waiting + sum(
            d.health["queue"]["total"] for d in channel.destinations.all()
        )
    return {
        "channels": channels,
        "may_operate": has_role(request.user, Role.OPERATOR),
        "may_edit": has_role(request.user, Role.ANALYST),
        "may_import": has_role(request.user, Role.ADMIN),
    }


def _unmapped(channel_ids: list[int]) -> dict[int, list[dict]]:
    """Per channel, the message types it received that have no map: how many, the last one
    (stored with their error, never converted). One grouped query on a partial index."""
    rows = (
        Message.objects.filter(channel_id__in=channel_ids, error_class="UnsupportedMessageType")
        .values("channel", "message_type")
        .annotate(count=Count("id"), last=Max("received_at"))
        .order_by("channel", "-count", "message_type")
    )
    found: dict[int, list[dict]] = {}
    for row in rows:
        found.setdefault(row.pop("channel"), []).append(row)
    return found


def _last_hour(channel_ids: list[int]) -> dict[int, tuple[int, int, int]]:
    """Per channel: messages received in the last hour, those of them in ERROR, and messages
    (of any age) still waiting to be processed. One grouped query."""
    since = timezone.now() - timedelta(hours=1)
    recent = Q(received_at__gte=since)
    waiting = Q(status=Message.Status.RECEIVED)
    rows = (
        Message.objects.filter(recent | waiting, channel_id__in=channel_ids)
        .values("channel")
        .annotate(
            received=Count("id", filter=recent),
            errors=Count("id", filter=recent & Q(status=Message.Status.ERROR)),
            waiting=Count("id", filter=waiting),
        )
        .values_list("channel", "received", "errors", "waiting")
    )
    return {channel: counts for channel, *counts in rows}
