"""Messages: the latest traffic with status, and one message with everything that happened to it."""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.shortcuts import get_object_or_404, render

from channels_app.models import Attempt, Channel, Delivery, Message

PAGE_SIZE = 50


def message_list(request):
    messages = (
        Message.objects.select_related("channel")
        .defer("raw", "canonical", "issues")
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
    filters = {
        "status": request.GET.get("status", ""),
        "channel": request.GET.get("channel", ""),
        "q": request.GET.get("q", "").strip(),
    }
    if filters["status"] in Message.Status.values:
        messages = messages.filter(status=filters["status"])
    if filters["channel"].isdigit():
        messages = messages.filter(channel_id=int(filters["channel"]))
    if filters["q"]:
        messages = messages.filter(
            Q(control_id=filters["q"]) | Q(message_type__iexact=filters["q"])
        )
    page = Paginator(messages, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "statuses": Message.Status.choices,
        "channels": Channel.objects.only("id", "name"),
    }
    template = "messages/_rows.html" if request.htmx else "messages/list.html"
    return render(request, template, context)


def message_detail(request, pk: int):
    attempts = Prefetch("attempts", queryset=Attempt.objects.order_by("number"))
    message = get_object_or_404(Message.objects.select_related("channel", "channel_version"), pk=pk)
    deliveries = message.deliveries.select_related("destination").prefetch_related(attempts)
    canonical = (
        json.dumps(message.canonical, indent=2, ensure_ascii=False) if message.canonical else ""
    )
    return render(
        request,
        "messages/detail.html",
        {
            "message": message,
            "segments": message.raw_text.replace("\r\n", "\r").replace("\n", "\r").split("\r"),
            "canonical": canonical,
            "deliveries": deliveries,
        },
    )
