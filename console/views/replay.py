"""Replay from the console: one message from its page, every failed message matching the list's
filters (a job whose progress the page polls), and edit-and-resend for those granted it.

The work and its audit entry come from console.replays, which the REST API calls too.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from channels_app.models import Message, ReplayJob
from channels_app.pipeline import replay
from console import audit, message_filters, replays
from console.access import requires
from console.message_filters import MessageFilter
from console.roles import RESEND_EDITED, Role


@requires(Role.OPERATOR)
@require_POST
def message_replay(request, pk: int):
    message = get_object_or_404(Message.objects.only("id"), pk=pk)
    mode = request.POST.get("mode", "")
    if mode not in replay.MODES:
        return HttpResponse(f"Choose a replay mode: {', '.join(replay.MODES)}.", status=400)
    counts = replays.replay_message(request, message.pk, mode)
    if counts["replayed"]:
        flash.success(request, f"Replayed ({ReplayJob.Mode(mode).label.lower()}).")
    else:
        flash.warning(request, f"Nothing replayed: {', '.join(counts['skipped'])}.")
    return redirect(reverse("message", args=[message.pk]) + "?watch=1")


@requires(Role.OPERATOR)
@require_POST
def message_replay_bulk(request):
    """Replay every failed message the list's filters match; answers with the job's progress."""
    mode = request.POST.get("mode", "")
    if mode not in replay.MODES:
        return _refused(request, f"Choose a replay mode: {', '.join(replay.MODES)}.")
    filterset = MessageFilter(request.POST, queryset=Message.objects.all())
    if not filterset.is_valid():
        refused = "; ".join(
            f"{k}: {' '.join(v)}" for k, v in message_filters.errors(filterset).items()
        )
        return _refused(request, f"Unknown filter value: {refused}")
    ids = replay.selected_ids(filterset.qs, mode)
    selection = {"filter": message_filters.given(filterset)}
    try:
        job = replays.replay_selection(request, ids, mode, selection)
    except replay.SelectionTooLarge as exc:
        return _refused(request, str(exc))
    if not request.htmx:
        return redirect("replay-job", pk=job.pk)
    return render(request, "messages/_replay_job.html", {"job": job})


def _refused(request, reason: str):
    # htmx swaps only 2xx answers: the reason goes where the progress would have gone.
    context = {"error": reason}
    return render(
        request, "messages/_replay_job.html", context, status=200 if request.htmx else 400
    )


@requires(Role.OPERATOR)
def replay_job(request, pk: int):
    """A bulk replay's progress: the fragment polls itself until the job is over."""
    job = get_object_or_404(ReplayJob.objects.defer("message_ids"), pk=pk)
    template = "messages/_replay_job.html" if request.htmx else "messages/replay_job.html"
    return render(request, template, {"job": job})


@requires(RESEND_EDITED)
def message_resend(request, pk: int):
    """GET: the raw body in an editor (a PHI view: audited). POST: store the edit as a new message
    on the same channel and send it through the pipeline."""
    message = get_object_or_404(Message.objects.select_related("channel"), pk=pk)
    if request.method != "POST":
        try:
            text = replay.editable_text(message)
        except replay.ResendRefused as exc:
            return _editor(request, message, "", error=str(exc))
        audit.record(
            request, "phi.reveal", target=f"message:{pk}", detail={"purpose": "edit-and-resend"}
        )
        return _editor(request, message, text)
    edited = request.POST.get("raw", "").replace("\x00", "")
    try:
        copy = replays.resend(request, message.pk, edited)
    except replay.ResendRefused as exc:
        return _editor(request, message, edited, error=str(exc), status=400)
    flash.success(request, f"Edited copy of message #{message.pk} sent as #{copy.pk}.")
    return redirect(reverse("message", args=[copy.pk]) + "?watch=1")


def _editor(request, message: Message, text: str, *, error: str = "", status: int = 200):
    # The editor opens in the message page (htmx); it posts as a plain form, so a refusal comes
    # back as the whole editor page with the reason (htmx would not swap a 400 in).
    template = "messages/_resend.html" if request.htmx else "messages/resend.html"
    context = {"message": message, "text": text, "error": error}
    return render(request, template, context, status=status)
