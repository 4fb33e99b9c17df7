"""The Dashboard: the console's landing page for every role, for the whole hub, one channel or
one destination. The page is rendered with the numbers of the moment; static/console/dashboard.js
keeps it live over /ws/dashboard/ and polls ``dashboard-data`` while the socket is down."""

from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import render

from channels_app.models import Channel, Destination
from console import dashboard
from console.access import requires
from console.roles import Role


@requires(Role.VIEWER)
def dashboard_page(request):
    view = dashboard.Scope.of(request.GET)
    data = dashboard.snapshot(view)
    context = {
        "data": data,
        "figures": dashboard.figure_rows(data),
        "scope": view,
        "scope_label": _label(view),
    }
    return render(request, "dashboard/page.html", context)


@requires(Role.VIEWER)
def dashboard_data(request):
    """The same snapshot as JSON: the page's fallback while its websocket is down."""
    view = dashboard.Scope.of(request.GET)
    return JsonResponse(dashboard.snapshot(view))


def _label(view: dashboard.Scope) -> str:
    if view.destination_id is not None:
        destination = Destination.objects.filter(pk=view.destination_id).first()
        return f"destination {destination.name}" if destination else "an unknown destination"
    if view.channel_id is not None:
        channel = Channel.objects.filter(pk=view.channel_id).first()
        return f"channel {channel.name}" if channel else "an unknown channel"
    return ""
