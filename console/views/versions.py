"""A channel's draft and versions: review the draft (its diff against what runs, and what it does
to every sample) and publish it with a note, or discard it; list the versions, compare any two,
and roll back to one (admins). Each change goes through console.channel_actions, as the API's."""

from __future__ import annotations

import json

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from channels_app import drafts
from channels_app.models import Channel, ChannelDraft
from console import channel_actions
from console.access import requires
from console.roles import Role, has_role
from console.views.bench import diff_lines

STATUS_LABELS = {
    drafts.UNCHANGED: ("unchanged", "success"),
    drafts.CHANGED: ("changed", "warning"),
    drafts.FAILED: ("failed", "danger"),
}


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def draft_publish(request, pk: int):
    """The draft's review page; POST publishes it as a new version with the note."""
    channel = get_object_or_404(Channel, pk=pk)
    draft = ChannelDraft.objects.filter(channel=channel).select_related("updated_by").first()
    if draft is None:
        messages.info(request, f"Channel “{channel.name}” has no draft: edit it to start one.")
        return redirect(f"{reverse('channels')}#channel-{channel.pk}")
    if request.method == "POST":
        note = request.POST.get("note", "").strip()[:200]
        try:
            version = channel_actions.publish_draft(request, channel, note)
        except drafts.DraftError as exc:
            messages.error(request, f"Not published: {exc}")
            return redirect("channel-publish", pk=channel.pk)
        messages.success(
            request, f"Channel “{channel.name}” published as version {version.number}."
        )
        return redirect(
            f"{reverse('channel-versions', args=[channel.pk])}#version-{version.number}"
        )
    previews = [
        {"preview": p, "label": STATUS_LABELS[p.status], "diff": diff_lines(p.diff)}
        for p in drafts.preview(channel)
    ]
    context = {
        "channel": channel,
        "draft": draft,
        "changes": shown(drafts.draft_diff(channel)),
        "previews": previews,
        "counts": {s: sum(p["preview"].status == s for p in previews) for s in STATUS_LABELS},
        "current": channel.current_version(),
    }
    return render(request, "channels/publish.html", context)


@requires(Role.ANALYST)
@require_POST
def draft_discard(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    if channel_actions.discard_draft(request, channel):
        messages.success(request, f"Draft of “{channel.name}” discarded: it runs as it was.")
    back = f"{reverse('channels')}#channel-{channel.pk}"
    return HttpResponseClientRedirect(back) if request.htmx else redirect(back)


@requires(Role.VIEWER)
def channel_versions(request, pk: int):
    """Every version, newest first; ``?a=&b=`` shows what changed from version a to version b."""
    channel = get_object_or_404(Channel, pk=pk)
    versions = list(channel.versions.select_related("created_by").order_by("-number"))
    by_number = {v.number: v for v in versions}
    a, b = _number(request, "a"), _number(request, "b")
    compared = None
    if a in by_number and b in by_number:
        compared = shown(drafts.diff(by_number[a].snapshot, by_number[b].snapshot))
    context = {
        "channel": channel,
        "versions": versions,
        "a": a if a in by_number else (versions[1].number if len(versions) > 1 else None),
        "b": b if b in by_number else (versions[0].number if versions else None),
        "compared": compared,
        "asked": a is not None or b is not None,
        "may_roll_back": has_role(request.user, Role.ADMIN),
        "may_test": has_role(request.user, Role.ANALYST),
        "has_draft": drafts.has_draft(channel),
    }
    return render(request, "channels/versions.html", context)


@requires(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def channel_rollback(request, pk: int, number: int):
    """Confirm, then publish version ``number``'s settings as a new version."""
    channel = get_object_or_404(Channel, pk=pk)
    target = get_object_or_404(channel.versions, number=number)
    if request.method == "POST":
        version = channel_actions.rollback(request, channel, number)
        messages.success(
            request,
            f"Channel “{channel.name}” rolled back to version {number}, published as version "
            f"{version.number}.",
        )
        return redirect(
            f"{reverse('channel-versions', args=[channel.pk])}#version-{version.number}"
        )
    live = channel.snapshot()
    context = {
        "channel": channel,
        "target": target,
        "changes": shown(drafts.diff(live, target.snapshot)),
        "has_draft": drafts.has_draft(channel),
    }
    return render(request, "channels/rollback.html", context)


def _number(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) < 10 else None


def shown(changes: list[dict]) -> list[dict]:
    """Changes with their values as text for the page (JSON for lists and objects)."""
    return [
        {**c, "before_text": _text(c["before"]), "after_text": _text(c["after"])} for c in changes
    ]


def _text(value) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
