"""Editing a destination, and adding one to a channel: its name, its transport's settings (a form
built from the transport's config schema) and its delivery policy. Analysts and above.

A save is validated by the same function as the REST API's (channels_app.destinations) and audited
the same way (console.audit.record_change, with the API's public representation, so secrets show
only as the marker).
"""

from __future__ import annotations

import sys

from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from adapters.registry import transport_class, transport_names
from channels_app.destinations import secret_fingerprints, secrets_changed
from channels_app.models import Channel, Destination
from console import audit
from console.access import requires
from console.api.serializers import DestinationSerializer
from console.config_forms import ConfigForm
from console.forms import DestinationForm
from console.roles import Role


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def destination_edit(request, pk: int):
    destination = get_object_or_404(Destination.objects.select_related("channel"), pk=pk)
    return _edit(request, destination)


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def destination_new(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    chosen = request.POST.get("transport") or request.GET.get("transport")
    if chosen not in transport_names():
        status = 400 if chosen or request.method == "POST" else 200
        context = {"channel": channel, "transports": transports(), "unknown": chosen}
        return render(request, "destinations/choose.html", context, status=status)
    destination = Destination(channel=channel, transport=chosen)
    if request.htmx and request.method == "GET":  # the transport select changed: its fields
        context = {"config_form": ConfigForm(chosen), "transport": _transport(chosen)}
        return render(request, "destinations/_config.html", context)
    return _edit(request, destination)


def _edit(request, destination: Destination):
    data = request.POST if request.method == "POST" else None
    is_new = destination.pk is None
    # Before the forms are validated: a ModelForm writes what it cleans onto its instance.
    before = None if is_new else DestinationSerializer(destination).data
    secrets_before = secret_fingerprints(destination.transport, destination.config)
    title = "New destination" if is_new else destination.name
    form = DestinationForm(data, instance=destination)
    config_form = ConfigForm(
        destination.transport,
        data,
        current=None if is_new else destination.public_config,
        stored=None if is_new else destination.config,
    )
    if data is not None and all([form.is_valid(), config_form.is_valid()]):
        with transaction.atomic():
            destination = form.save(commit=False)
            destination.config = config_form.config  # merged, validated and sealed
            destination.save()
            after = DestinationSerializer(destination).data
            secrets_after = secret_fingerprints(destination.transport, destination.config)
            diff = audit.record_change(
                request,
                "destination",
                destination.pk,
                before,
                after,
                secrets=secrets_changed(secrets_before, secrets_after),
            )
        if is_new:
            messages.success(request, f"Destination “{destination.name}” added.")
        elif diff:
            messages.success(request, f"Destination “{destination.name}” saved.")
        else:
            messages.info(request, f"Destination “{destination.name}”: nothing changed.")
        return redirect(f"{reverse('channels')}#destination-{destination.pk}")
    context = {
        "destination": destination,
        "title": title,
        "channel": destination.channel,
        "form": form,
        "config_form": config_form,
        "transports": transports(),
        "transport": _transport(destination.transport),
        "is_new": is_new,
    }
    return render(request, "destinations/edit.html", context)


def transports() -> list[dict]:
    """Every registered transport: name, label and what its module says it does."""
    return [_transport(name) for name in transport_names()]


def _transport(name: str) -> dict:
    module = sys.modules[transport_class(name).__module__]
    summary = (module.__doc__ or "").strip().split("\n")[0]
    label = dict(Destination.Transport.choices).get(name, name)
    return {"name": name, "label": label, "summary": summary}
