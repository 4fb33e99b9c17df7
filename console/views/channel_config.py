"""Creating, editing, cloning, enabling, archiving and deleting a channel: analysts and above.

The channel's settings are a ModelForm over Channel.EDITABLE; its source's settings a form built
from the source type's schemas (console.config_forms.SourceForm), checked by the function the
REST API calls. Every change goes through console.channel_actions, which audits it.
"""

from __future__ import annotations

import copy

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from channels_app import channels, drafts
from channels_app.models import Channel
from channels_app.sources import public_source_config
from console import channel_actions
from console.access import requires
from console.config_forms import SourceForm
from console.forms import ChannelForm, CloneForm
from console.roles import Role

# What each source type is, for the source select and the source card.
SOURCE_SUMMARIES = {
    "mllp": "An MLLP listener: senders connect over TCP and get an ACK once each message is "
    "stored.",
    "http": "HTTP inbound: service tokens POST HL7 v2, FHIR JSON or custom JSON to the channel's "
    "endpoint.",
    "file": "File pickup: files matching the pattern in a directory are read, then moved to "
    "processed/ or error/.",
}


# The fields edit.html places itself; any other editable field (one added to Channel.EDITABLE
# later) is shown under "More settings" without a template change.
LAID_OUT = {
    "name",
    "enabled",
    "description",
    "tags",
    "source_type",
    "dedupe_window_s",
    "max_message_bytes",
    "retention_days",
    "route_filter",
}


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def channel_new(request):
    return _edit(request, Channel(source_type=Channel.SourceType.MLLP))


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def channel_edit(request, pk: int):
    return _edit(request, get_object_or_404(Channel, pk=pk))


def _edit(request, channel: Channel):
    """A new channel is created as it is saved; an existing one's changes go to its draft (what
    runs changes when the draft is published). Enabling it is an action of its own."""
    is_new = channel.pk is None
    shown = channel if is_new else drafts.draft_channel(channel)
    source_type = _chosen_source_type(request, shown)
    if request.htmx and request.method == "GET":  # the source select changed: its fields
        form = _source_form(shown, source_type, None)
        return render(request, "channels/_source.html", _source_context(form))
    data = request.POST if request.method == "POST" else None
    # A copy: a ModelForm writes what it cleans onto its instance, and the audit needs "before".
    form = ChannelForm(data, instance=copy.copy(shown), initial={"source_type": source_type})
    if not is_new:
        del form.fields["enabled"]
    source_form = _source_form(shown, source_type, data)
    if data is not None and all([form.is_valid(), source_form.is_valid()]):
        values = {name: form.cleaned_data[name] for name in form.fields}
        values["source_config"] = source_form.config
        if is_new:
            channel = channel_actions.create(request, values)
            messages.success(request, f"Channel “{channel.name}” created.")
            return redirect(f"{reverse('channels')}#channel-{channel.pk}")
        if _saved_to_draft(request, channel, values, form):
            return redirect(f"{reverse('channels')}#channel-{channel.pk}")
    context = {
        "channel": shown,
        "is_new": is_new,
        "form": form,
        "more_fields": [form[name] for name in form.fields if name not in LAID_OUT],
        **_source_context(source_form),
    }
    return render(request, "channels/edit.html", context)


def _saved_to_draft(request, channel: Channel, values: dict, form) -> bool:
    """Put ``values`` into the channel's draft and say so; False (the form told why) when the
    draft as a whole is refused."""
    try:
        draft = channel_actions.save_draft(request, channel, {**drafts.draft_of(channel), **values})
    except drafts.DraftError as exc:
        form.add_error(None, str(exc))
        return False
    if draft.changes:
        messages.success(
            request,
            f"Saved to the draft of “{channel.name}”: it runs as before until the draft is "
            "published.",
        )
    else:
        messages.info(request, f"Channel “{channel.name}”: nothing changed.")
    return True


def _chosen_source_type(request, channel: Channel) -> str:
    chosen = request.POST.get("source_type") or request.GET.get("source_type")
    return chosen if chosen in Channel.SourceType.values else channel.source_type


def _source_form(channel: Channel, source_type: str, data) -> SourceForm:
    """The source's settings; the stored ones (secrets write-only) while its type is kept."""
    kept = channel.pk is not None and source_type == channel.source_type
    return SourceForm(
        source_type,
        data,
        current=public_source_config(channel) if kept else None,
        stored=channel.source_config if kept else None,
        channel_id=channel.pk,
    )


def _source_context(source_form: SourceForm) -> dict:
    source_type = source_form.source_type
    return {
        "source_form": source_form,
        "source_label": Channel.SourceType(source_type).label,
        "source_summary": SOURCE_SUMMARIES.get(source_type, ""),
    }


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def channel_clone(request, pk: int):
    """A disabled copy with the destinations and rules; its source needs its own port or folder."""
    original = get_object_or_404(Channel, pk=pk)
    data = request.POST if request.method == "POST" else None
    form = CloneForm(data, initial={"name": f"{original.name} (copy)"})
    source_form = SourceForm(
        original.source_type,
        data,
        current=public_source_config(original),
        stored=original.source_config,
    )
    if data is not None and all([form.is_valid(), source_form.is_valid()]):
        name = form.cleaned_data["name"]
        clone = channel_actions.clone(request, original, name, source_form.config)
        messages.success(
            request, f"Channel “{clone.name}” created as a copy, disabled: enable it when ready."
        )
        return redirect(f"{reverse('channels')}#channel-{clone.pk}")
    context = {"channel": original, "form": form, **_source_context(source_form)}
    return render(request, "channels/clone.html", context)


@requires(Role.ANALYST)
@require_POST
def channel_enable(request, pk: int):
    return _set_enabled(request, pk, enabled=True)


@requires(Role.ANALYST)
@require_POST
def channel_disable(request, pk: int):
    return _set_enabled(request, pk, enabled=False)


def _set_enabled(request, pk: int, *, enabled: bool):
    channel = get_object_or_404(Channel, pk=pk, archived_at__isnull=True)
    channel_actions.set_enabled(request, channel, enabled)
    word = "enabled" if enabled else "disabled: its source stops"
    messages.success(request, f"Channel “{channel.name}” {word}.")
    return redirect(f"{reverse('channels')}#channel-{channel.pk}")


@requires(Role.ANALYST)
@require_POST
def channel_archive(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    channel_actions.archive(request, channel)
    messages.success(
        request,
        f"Channel “{channel.name}” archived: its source is stopped; its messages and history "
        "stay. Archived channels are listed under “Show archived”.",
    )
    return redirect("channels")


@requires(Role.ANALYST)
@require_POST
def channel_restore(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    channel_actions.restore(request, channel)
    messages.success(request, f"Channel “{channel.name}” restored, disabled.")
    return redirect(f"{reverse('channels')}#channel-{channel.pk}")


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def channel_delete(request, pk: int):
    """Delete, after a confirmation, a channel that never received a message."""
    channel = get_object_or_404(Channel, pk=pk)
    deletable = channels.deletable(channel)
    if request.method == "POST" and deletable:
        name = channel.name
        try:
            channel_actions.delete(request, channel)
        except channels.DeleteRefused as exc:
            messages.error(request, str(exc))
            return redirect(f"{reverse('channels')}#channel-{channel.pk}")
        messages.success(request, f"Channel “{name}” deleted.")
        return redirect("channels")
    status = 409 if request.method == "POST" else 200
    context = {"channel": channel, "deletable": deletable}
    return render(request, "channels/delete.html", context, status=status)
