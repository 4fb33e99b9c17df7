"""Messages: the latest traffic with status, and one message with everything that happened to it.

PHI is masked on every page by default; an operator reveals one message's PHI with an explicit
POST, which is written to the audit log. Viewers never see it.
"""

from __future__ import annotations

import json
import re
from functools import partial

from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from channels_app.models import Attempt, Channel, Delivery, Message, ReplayJob
from console import audit
from console.access import requires
from console.message_phi import phi_by_message
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
    messages = (
        Message.objects.select_related("channel")
        .defer("raw", "canonical", "canonical_sealed", "issues")
        .annotate(
            delivered=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.DELIVERED)),
            failed=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.FAILED)),
            open=Count(
                "deliveries",
                filter=Q(
                    deliveries__status__in=[
                        Delivery.Status.PENDING,
                        Delivery.Status.SENDING,
                        Delivery.Status.RETRY,
                    ]
                ),
            ),
        )
        .order_by("-id")
    )
    filters = page_filters(request.GET)
    messages = filtered(messages, filters)
    page = Paginator(messages, PAGE_SIZE).get_page(request.GET.get("page"))
    # The list never reveals: an error detail may quote a patient's value.
    phi = phi_by_message(m.pk for m in page if m.error_detail)
    for m in page:
        m.shown_error = mask_free_text(m.error_detail, phi.get(m.pk, UNKNOWN_PHI))
        if m.status == Message.Status.FILTERED:
            m.shown_routing = _filtered_because(m.routing or [])
    context = {
        "page": page,
        "filters": filters,
        "statuses": Message.Status.choices,
        "channels": Channel.objects.only("id", "name"),
        "may_replay": has_role(request.user, Role.OPERATOR),
        "replay_modes": ReplayJob.Mode.choices,
    }
    template = "messages/_rows.html" if request.htmx else "messages/list.html"
    return render(request, template, context)


def page_filters(data) -> dict:
    """The list's filters as given (GET for the list, POST for its bulk replay)."""
    return {
        "status": data.get("status", ""),
        "channel": data.get("channel", ""),
        "q": data.get("q", "").strip().replace("\x00", ""),
    }


def filtered(messages, filters: dict):
    if filters["status"] in Message.Status.values:
        messages = messages.filter(status=filters["status"])
    if filters["channel"].isdigit() and int(filters["channel"]) < 2**63:
        messages = messages.filter(channel_id=int(filters["channel"]))
    if filters["q"]:
        messages = messages.filter(
            Q(control_id=filters["q"]) | Q(message_type__iexact=filters["q"])
        )
    return messages


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
        phi = message_phi(raw, canonical, message.content_type, pruned=bool(message.pruned_at))
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
        "canonical": json.dumps(canonical, indent=2, ensure_ascii=False) if canonical else "",
        "error_detail": shown(message.error_detail),
        "issues": shown(message.issues or []),
        "routing": [
            {**d, "parts": _reason_parts(d["reason"])}
            for d in (message.routing if reveal else mask_routing(message.routing or []))
        ],
        "deliveries": deliveries,
        **_replay_context(request, message, deliveries),
    }


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
