"""Editing a destination, and adding one to a channel: its name, its transport's settings (a form
built from the transport's config schema) and its delivery policy. Analysts and above.

A save goes to the channel's draft (channels_app.drafts), checked as the REST API checks it, and
audited with its diff (secrets only as the marker); it runs once the draft is published.
"""

from __future__ import annotations

import sys

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from adapters.registry import transport_class, transport_names
from channels_app import drafts
from channels_app.models import Channel, Destination
from channels_app.sealing import masked, secret_fields
from console import channel_actions
from console.access import requires
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
    """The destination as the channel's draft has it; a save changes the draft (audited), and
    what runs changes when the draft is published."""
    data = request.POST if request.method == "POST" else None
    is_new = destination.pk is None
    channel = destination.channel
    document = drafts.draft_of(channel)
    index, entry = drafts.destination_entry(channel, document, destination)
    shown = drafts.drafted_destination(destination, entry)
    form = DestinationForm(data, instance=shown)
    config_form = ConfigForm(
        shown.transport,
        data,
        current=None if is_new else masked(entry["config"], secret_fields(shown.transport)),
        stored=None if is_new else entry["config"],
    )
    if data is not None and all([form.is_valid(), config_form.is_valid()]):
        values = {name: form.cleaned_data[name] for name in DestinationForm.Meta.fields}
        entry = {**entry, **values, "config": config_form.config}
        document = drafts.with_destination(document, index, entry)
        try:
            draft = channel_actions.save_draft(request, channel, document)
        except drafts.DraftError as exc:
            form.add_error(None, str(exc))
        else:
            _say_saved(request, channel, entry["name"], is_new, bool(draft.changes))
            return redirect(f"{reverse('channels')}#channel-{channel.pk}")
    context = {
        "destination": shown,
        "title": "New destination" if is_new else shown.name,
        "channel": channel,
        "form": form,
        "config_form": config_form,
        "transports": transports(),
        "transport": _transport(shown.transport),
        "is_new": is_new,
    }
    return render(request, "destinations/edit.html", context)


def _say_saved(request, channel: Channel, name: str, is_new: bool, changed: bool) -> None:
    if not changed:
        messages.info(request, f"Destination “{name}”: nothing changed.")
        return
    done = "added to" if is_new else "saved to"
    messages.success(
        request,
        f"Destination “{name}” {done} the draft of “{channel.name}”: it runs as before until the "
        "draft is published.",
    )


def transports() -> list[dict]:
    """Every registered transport: name, label and what its module says it does."""
    return [_transport(name) for name in transport_names()]


def _transport(name: str) -> dict:
    module = sys.modules[transport_class(name).__module__]
    summary = (module.__doc__ or "").strip().split("\n")[0]
    label = dict(Destination.Transport.choices).get(name, name)
    return {"name": name, "label": label, "summary": summary}
