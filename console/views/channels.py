"""Channels: each source with its destinations and today's traffic."""

from __future__ import annotations

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.shortcuts import render

from channels_app.models import Channel, DedupeEntry, Message
from console.access import requires
from console.roles import Role


@requires(Role.VIEWER)
def channel_list(request):
    channels = list(
        Channel.objects.prefetch_related("destinations", "versions").annotate(
            received=Count("messages"),
            errors=Count("messages", filter=Q(messages__status=Message.Status.ERROR)),
        )
    )
    duplicates = dict(
        DedupeEntry.objects.values("channel")
        .annotate(n=Coalesce(Sum("duplicates"), 0))
        .values_list("channel", "n")
    )
    for channel in channels:
        channel.duplicates = duplicates.get(channel.id, 0)
        channel.version = max((v.number for v in channel.versions.all()), default=None)
    return render(request, "channels/list.html", {"channels": channels})
