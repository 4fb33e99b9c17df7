"""Replay from the console: one message from its page; every failed message matching the list's
filters (counted first by a dry run, then a job the operator can pause, resume or cancel, whose
progress and per-message results its page polls); and edit-and-resend for those granted it.

The work and its audit entry come from console.replays, which the REST API calls too.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from channels_app.models import Destination, Message, ReplayItem, ReplayJob
from channels_app.pipeline import replay
from console import audit, message_filters, replays
from console.access import requires
from console.forms import BulkReplayForm
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
    """Replay every failed message the list's filters match. With ``dry_run``: only what it would
    do (taken, skipped and why, destinations), and a button to start it; else the job's progress."""
    form = BulkReplayForm(request.POST)
    if not form.is_valid():
        return _refused(request, form.problems())
    filterset = MessageFilter(request.POST, queryset=Message.objects.all())
    if not filterset.is_valid():
        refused = "; ".join(
            f"{k}: {' '.join(v)}" for k, v in message_filters.errors(filterset).items()
        )
        return _refused(request, f"Unknown filter value: {refused}")
    mode, destinations = form.cleaned_data["mode"], form.cleaned_data["destinations"]
    if form.cleaned_data["dry_run"]:
        preview = replay.preview(filterset.qs, mode, destinations)
        context = {"preview": preview, "given": _given(request.POST, filterset)}
        return render(request, "messages/_replay_preview.html", context)
    ids = replay.selected_ids(filterset.qs, mode, destinations)
    selection = {"filter": message_filters.given(filterset)}
    try:
        job = replays.replay_selection(
            request,
            ids,
            mode,
            selection,
            destinations=destinations,
            rate=form.cleaned_data["rate"],
        )
    except replay.SelectionTooLarge as exc:
        return _refused(request, str(exc))
    if not request.htmx:
        return redirect("replay-job", pk=job.pk)
    return render(request, "messages/_replay_job.html", _job_context(job))


def _given(data, filterset) -> list[tuple[str, str]]:
    """The filters and replay choices, as hidden fields for the preview's Start button: it
    starts what was counted, whatever the list's form says by then."""
    names = {*message_filters.given(filterset), "mode", "destinations", "rate"}
    return [(name, value) for name in sorted(names) for value in data.getlist(name) if value]


def _refused(request, reason: str):
    # htmx swaps only 2xx answers: the reason goes where the progress would have gone.
    context = {"error": reason}
    return render(
        request, "messages/_replay_job.html", context, status=200 if request.htmx else 400
    )


@requires(Role.OPERATOR)
def replay_job(request, pk: int):
    """A bulk replay's progress and results: the card polls itself until the job is over and
    every message it took has settled; the page lists the messages by outcome."""
    job = get_object_or_404(ReplayJob.objects.defer("message_ids"), pk=pk)
    context = _job_context(job)
    if request.htmx and request.GET.get("part") != "items":
        return render(request, "messages/_replay_job.html", context)
    shown = request.GET.get("outcome")
    if shown not in ReplayItem.Outcome.values:
        shown = _first_shown(context["outcomes"])
    items = job.items.filter(outcome=shown).order_by("message_id")
    items = items.select_related("message__channel").only(
        "message_id",
        "outcome",
        "detail",
        "at",
        "message__message_type",
        "message__control_id",
        "message__channel__name",
    )
    context |= {
        "shown": shown,
        "items": Paginator(items, ITEMS_PAGE).get_page(request.GET.get("page")),
    }
    template = "messages/_replay_items.html" if request.htmx else "messages/replay_job.html"
    return render(request, template, context)


ITEMS_PAGE = 50
# The tab a job page opens on: the first of these with messages (what needs a look first).
SHOWN_FIRST = ["failed", "errored", "retrying", "in_progress", "delivered", "filtered", "skipped"]


def _first_shown(outcomes: list[tuple[str, str, int]]) -> str:
    counts = {value: n for value, _, n in outcomes}
    return next((o for o in SHOWN_FIRST if counts.get(o)), ReplayItem.Outcome.DELIVERED)


def _job_context(job: ReplayJob) -> dict:
    counts = replay.outcomes(job)
    labels = dict(ReplayItem.Outcome.choices)
    return {
        "job": job,
        "outcomes": [(value, labels[value], n) for value, n in counts.items()],
        "settled": replay.is_settled(counts),
        "destinations": Destination.objects.filter(pk__in=job.destination_ids).order_by("name"),
    }


@requires(Role.OPERATOR)
@require_POST
def replay_job_steer(request, pk: int, action: str):
    """Pause, resume or cancel a job (audited); answers with its card."""
    try:
        job = replays.steer(request, pk, action)
    except ReplayJob.DoesNotExist:
        raise Http404 from None
    except replay.NotNow as exc:  # e.g. it finished as the button was pressed: the card shows so
        job = get_object_or_404(ReplayJob.objects.defer("message_ids"), pk=pk)
        if not request.htmx:
            flash.warning(request, f"Replay #{pk} was not changed: {exc}.")
    if not request.htmx:
        return redirect("replay-job", pk=job.pk)
    return render(request, "messages/_replay_job.html", _job_context(job))


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
