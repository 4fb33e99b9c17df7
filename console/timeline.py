"""A message's history in order, for its page and the API: received, processed, routed, every
attempt and its answer, delivered or failed, each replay and each edit-and-resend (both ways).
Whatever came from outside (answers, error details) is masked against the message's PHI."""

from __future__ import annotations

from channels_app.models import Attempt, Delivery, Message, ReplayItem, ReplayJob
from channels_app.pipeline import replay
from console.message_phi import phi_of_message_id
from console.models import AuditEvent
from console.phi import mask_free_text, mask_routing


def of(message: Message) -> list[dict]:
    """The message's events, oldest first; each has ``at``, ``kind``, ``title`` and ``detail``,
    and links as ids (``message``, ``replay_job``, ``delivery``)."""
    phi = phi_of_message_id(message.pk)

    def masked(text: str) -> str:
        return mask_free_text(text or "", phi)

    events = [*_arrival(message), *_processing(message, masked)]
    events += _deliveries(message, masked)
    events += _replays(message)
    events += _resends(message)
    events.sort(key=lambda e: (e["at"] is None, e["at"] or message.received_at))
    for event in events:
        event["at"] = event["at"].isoformat() if event["at"] else None
    return events


def _event(at, kind: str, title: str, detail: str = "", **links) -> dict:
    return {"at": at, "kind": kind, "title": title, "detail": detail, **links}


def _arrival(message: Message) -> list[dict]:
    channel = message.channel
    source = f"{channel.name} ({channel.source_type})" if channel.source_type else channel.name
    peer = f" from {message.remote_addr}" if message.remote_addr else ""
    title = f"Received on {source}{peer}"
    events = [_event(message.received_at, "received", title, f"{message.size} bytes")]
    if message.resent_from_id:
        by = message.resent_by.get_username() if message.resent_by else "someone"
        text = f"Edited copy of message #{message.resent_from_id}, sent by {by}"
        events.append(
            _event(message.received_at, "resent_from", text, message=message.resent_from_id)
        )
    return events


def _processing(message: Message, masked) -> list[dict]:
    if message.processed_at is None:
        return []
    version = message.channel_version.number if message.channel_version else None
    took = (message.processed_at - message.received_at).total_seconds() * 1000
    detail = f"channel version {version}, " if version else ""
    events = [
        _event(
            message.processed_at, "processed", "Processed", f"{detail}{took:.0f} ms after receipt"
        )
    ]
    if message.status == Message.Status.ERROR:
        where = f" at {message.error_path}" if message.error_path else ""
        title = f"Stopped at {message.error_stage}: {message.error_class}{where}"
        events.append(_event(message.processed_at, "error", title, masked(message.error_detail)))
    for decision in mask_routing(message.routing or []):
        verb = "Routed to" if decision.get("routed") else "Not routed to"
        title = f"{verb} {decision.get('destination_name', '')}"
        events.append(
            _event(
                message.processed_at,
                "routing",
                title,
                decision.get("reason", ""),
                destination=decision.get("destination"),
            )
        )
    return events


def _deliveries(message: Message, masked) -> list[dict]:
    events = []
    deliveries = message.deliveries.select_related("destination").order_by("id")
    attempts = Attempt.objects.filter(delivery__message=message).order_by("started_at", "number")
    names = {}
    for delivery in deliveries:
        names[delivery.pk] = delivery.destination.name
        if delivery.status == Delivery.Status.DELIVERED:
            events.append(
                _event(
                    delivery.delivered_at,
                    "delivered",
                    f"Delivered to {delivery.destination.name}",
                    delivery=delivery.pk,
                )
            )
    last_failed = {}
    for attempt in attempts:
        name = names.get(attempt.delivery_id, "")
        code = f" ({attempt.status_code})" if attempt.status_code else ""
        title = f"Attempt {attempt.number} to {name}: {attempt.get_outcome_display()}{code}"
        answer = masked(attempt.error or attempt.response_summary)
        detail = (
            f"{answer} · {attempt.duration_ms:.0f} ms"
            if answer
            else f"{attempt.duration_ms:.0f} ms"
        )
        events.append(
            _event(attempt.started_at, "attempt", title, detail, delivery=attempt.delivery_id)
        )
        last_failed[attempt.delivery_id] = attempt.started_at
    for delivery in deliveries:
        if delivery.status == Delivery.Status.FAILED:
            at = last_failed.get(delivery.pk, delivery.next_attempt_at)
            title = f"Failed at {delivery.destination.name}"
            events.append(
                _event(at, "failed", title, masked(delivery.last_error), delivery=delivery.pk)
            )
    return events


def _replays(message: Message) -> list[dict]:
    events = []
    # By the items' message index: a job is found without reading any job's selection.
    items = message.replay_items.select_related("job__created_by").defer("job__message_ids")
    for moving in items.filter(outcome__in=ReplayItem.MOVING):
        replay.settle(moving.job, message.pk)
    for item in items.order_by("id"):
        job = item.job
        by = job.created_by.get_username() if job.created_by else "someone"
        how = job.get_mode_display().lower()
        if item.outcome == ReplayItem.Outcome.SKIPPED:
            title = f"Skipped by {by}'s replay ({how}) in job #{job.pk}: {item.detail}"
        else:
            title = (
                f"Replayed by {by} ({how}) in job #{job.pk}: {item.get_outcome_display().lower()}"
            )
        events.append(_event(item.at, "replay", title, replay_job=job.pk))
    singles = AuditEvent.objects.filter(action="message.replayed", target=f"message:{message.pk}")
    for entry in singles:
        mode = (entry.detail or {}).get("mode", "")
        how = f" ({ReplayJob.Mode(mode).label.lower()})" if mode in ReplayJob.Mode.values else ""
        events.append(
            _event(entry.at, "replay", f"Replayed by {entry.actor_name or 'someone'}{how}")
        )
    return events


def _resends(message: Message) -> list[dict]:
    copies = message.resent_as.select_related("resent_by").only(
        "id", "received_at", "resent_by__username"
    )
    return [
        _event(
            copy.received_at,
            "resent_as",
            f"Edited and resent as message #{copy.pk} by "
            f"{copy.resent_by.get_username() if copy.resent_by else 'someone'}",
            message=copy.pk,
        )
        for copy in copies
    ]
