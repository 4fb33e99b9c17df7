"""Messages: the latest traffic with status, and one message with everything that happened to it.

PHI is masked on every page by default; an operator reveals one message's PHI with an explicit
POST, which is written to the audit log. Viewers never see it.
"""

from __future__ import annotations

import re
from functools import partial

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from adapters.codecs import exact_json
from channels_app import outcome
from channels_app.models import Attempt, Channel, Delivery, Destination, Message, ReplayJob
from channels_app.outcome import Outcome
from console import audit, message_filters, timeline
from console.access import requires
from console.message_filters import DELIVERY_STATES, ERROR_STAGES, MessageFilter
from console.message_phi import key_values, phi_by_message
from console.phi import (
    UNKNOWN_PHI,
    mask_body,
    mask_fhir,
    mask_free_text,
    mask_routing,
    message_phi,
)
from console.roles import RESEND_EDITED, Role, has_permission, has_role

PAGE_SIZE = 50


@requires(Role.VIEWER)
def message_list(request):
    filterset = MessageFilter(request.GET, queryset=message_filters.listed_messages())
    context = {
        "filterset": filterset,
        "filters": filterset.data,
        "statuses": message_filters.STATUSES,
        "error_stages": ERROR_STAGES,
        "delivery_states": DELIVERY_STATES,
        "channels": Channel.objects.only("id", "name"),
        "destinations": Destination.objects.only("id", "name", "channel_id").order_by("name"),
        "may_replay": has_role(request.user, Role.OPERATOR),
        "replay_modes": ReplayJob.Mode.choices,
        "searching": any(message_filters.given(filterset).values()),
    }
    status = 200
    if filterset.is_valid():
        context.update(_page(request, filterset.qs))
    else:  # shown above the table; htmx swaps only a 2xx answer in
        context["filter_errors"] = message_filters.errors(filterset)
        context["rows"] = []
        status = 200 if request.htmx else 400
    template = "messages/_rows.html" if request.htmx else "messages/list.html"
    return render(request, template, context, status=status)


def _page(request, messages) -> dict:
    """One page by keyset (``before`` or ``after`` an id): as fast on the last page of a million
    as on the first, with no count."""
    before, after = _id_param(request, "before"), _id_param(request, "after")
    if after is not None:
        rows = list(messages.filter(id__gt=after).order_by("id")[:PAGE_SIZE])[::-1]
    else:
        if before is not None:
            messages = messages.filter(id__lt=before)
        rows = list(messages.order_by("-id")[: PAGE_SIZE + 1])
    older = len(rows) > PAGE_SIZE if after is None else bool(rows)
    rows = rows[:PAGE_SIZE]
    _describe(rows)
    return {
        "rows": rows,
        "older": rows[-1].pk if rows and older else None,
        "newer": rows[0].pk if rows and (before is not None or after is not None) else None,
        "query": _query_without_page(request),
    }


def _describe(rows: list[Message]) -> None:
    """What the list says beside each row: the masked error, why it was filtered, and where its
    deliveries stand (one query for the page)."""
    phi = phi_by_message(m.pk for m in rows if m.error_detail)
    states = outcome.destination_states(m.pk for m in rows)
    for m in rows:
        m.shown_error = mask_free_text(m.error_detail, phi.get(m.pk, UNKNOWN_PHI))
        m.outcome_label = Outcome.labels.get(m.outcome, m.get_status_display())
        m.destination_states = states.get(m.pk, [])
        if m.status == Message.Status.FILTERED:
            m.shown_routing = _filtered_because(m.routing or [])


def _id_param(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and int(value) < 2**63 else None


def _query_without_page(request) -> str:
    query = request.GET.copy()
    for name in ("before", "after"):
        query.pop(name, None)
    return query.urlencode()


@requires(Role.VIEWER)
def message_detail(request, pk: int):
    return render(request, "messages/detail.html", _detail(request, pk, reveal=False))


@requires(Role.OPERATOR)
@require_POST
def message_reveal(request, pk: int):
    context = _detail(request, pk, reveal=True)
    audit.record(request, "phi.reveal", target=f"message:{pk}")
    template = "messages/_phi.html" if request.htmx else "messages/detail.html"
    return render(request, template, context)


def _detail(request, pk: int, *, reveal: bool) -> dict:
    attempts = Prefetch("attempts", queryset=Attempt.objects.order_by("number"))
    message = get_object_or_404(Message.objects.select_related("channel", "channel_version"), pk=pk)
    deliveries = list(message.deliveries.select_related("destination").prefetch_related(attempts))
    raw, canonical = message.raw_text, message.canonical_json  # opened here when sealed at rest
    shown = _as_is
    if not reveal:
        pruned = bool(message.pruned_at)
        known = key_values(message.pk)
        phi = message_phi(raw, canonical, message.content_type, pruned=pruned, known=known)
        shown = partial(mask_free_text, phi=phi)
        raw = mask_body(raw, message.content_type, indent=2)
        canonical = mask_fhir(canonical) if canonical else canonical
    for d in deliveries:
        d.shown_error = shown(d.last_error)
        for a in d.attempts.all():
            a.shown_outcome = shown(a.error or a.response_summary)
    return {
        "message": message,
        "revealed": reveal,
        "may_reveal": has_role(request.user, Role.OPERATOR),
        "segments": raw.replace("\r\n", "\r").replace("\n", "\r").split("\r"),
        "canonical": exact_json.dumps(canonical, indent=2, ensure_ascii=False) if canonical else "",
        "error_detail": shown(message.error_detail),
        "issues": shown(message.issues or []),
        "routing": [
            {**d, "parts": _reason_parts(d["reason"])}
            for d in (message.routing if reveal else mask_routing(message.routing or []))
        ],
        "deliveries": deliveries,
        "outcome": (found := outcome.of(message.status, (d.status for d in deliveries))),
        "outcome_label": Outcome.labels.get(found, found),
        "timeline": _timeline(message),
        **_replay_context(request, message, deliveries),
    }


def _timeline(message: Message) -> list[dict]:
    events = timeline.of(message)
    for event in events:  # the API gives ISO text; the page formats a time
        event["at_time"] = parse_datetime(event["at"]) if event["at"] else None
    return events


def _filtered_because(routing: list[dict]) -> str:
    """Why no destination took a message, in one line for the list."""
    if not routing:
        return "no enabled destination"
    reasons = {d["reason"] for d in mask_routing(routing)}
    return reasons.pop() if len(reasons) == 1 else "no destination's rule held"


def _reason_parts(reason: str) -> list[tuple[str, bool]]:
    """A routing reason as (text, is_code) parts: the rules it quotes (in backticks) as code."""
    return [(part, i % 2 == 1) for i, part in enumerate(re.split(r"`([^`]*)`", reason)) if part]


def _as_is(value):
    return value


OPEN = {Delivery.Status.PENDING, Delivery.Status.SENDING, Delivery.Status.RETRY}


def _replay_context(request, message: Message, deliveries: list[Delivery]) -> dict:
    """What the operator may replay here, and whether the page follows a replay until it settles
    (``?watch=1``, where a replay sends the operator)."""
    failed = any(d.status == Delivery.Status.FAILED for d in deliveries)
    modes = []
    if has_role(request.user, Role.OPERATOR) and not message.pruned_at:
        if failed:
            modes.append(ReplayJob.Mode.REDELIVER)
        if failed or message.status == Message.Status.ERROR:
            modes.append(ReplayJob.Mode.REPROCESS)
    busy = message.status == Message.Status.RECEIVED or any(d.status in OPEN for d in deliveries)
    return {
        "replay_modes": [(m, ReplayJob.Mode(m).label) for m in modes],
        "may_resend": has_permission(request.user, RESEND_EDITED),
        "watch": busy and request.GET.get("watch") == "1",
    }
