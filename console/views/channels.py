"""Channels: each source with its destinations, their delivery health and today's traffic.

Operators pause and resume a destination or a whole channel here (POST, audited); the work is
done by channels_app.pipeline.control, which the REST API calls too.
"""

from __future__ import annotations

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from channels_app.models import Channel, DedupeEntry, Destination, Message
from channels_app.pipeline import control
from channels_app.sources.status import source_states
from console import audit
from console.access import requires
from console.roles import Role, has_role


@requires(Role.VIEWER)
def channel_list(request):
    return render(request, "channels/list.html", _context(request, Channel.objects.all()))


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
    channels = list(
        channels.prefetch_related("destinations", "versions").annotate(
            received=Count("messages"),
            errors=Count("messages", filter=Q(messages__status=Message.Status.ERROR)),
        )
    )
    duplicates = dict(
        DedupeEntry.objects.filter(channel__in=channels)
        .values("channel")
        .annotate(n=Coalesce(Sum("duplicates"), 0))
        .values_list("channel", "n")
    )
    destinations = [d for c in channels for d in c.destinations.all()]
    health = control.destinations_health(destinations)
    states = source_states(channels)
    for channel in channels:
        channel.source_state = states[channel.pk]
        channel.duplicates = duplicates.get(channel.id, 0)
        channel.version = max((v.number for v in channel.versions.all()), default=None)
        for destination in channel.destinations.all():
            destination.health = health[destination.pk]
    return {
        "channels": channels,
        "may_operate": has_role(request.user, Role.OPERATOR),
        "may_edit": has_role(request.user, Role.ANALYST),
    }
