"""What happened to a message as a whole, derived from its deliveries: "Routed" says only that
routing chose destinations; the outcome says whether they got it. Read as SQL (an annotation for
lists, a condition for filters: no column to keep in step) or from deliveries already loaded."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Case, CharField, Exists, OuterRef, Q, Value, When

from channels_app.models import Delivery, Message


class Outcome:
    RECEIVED = "RECEIVED"
    DELIVERED = "DELIVERED"
    PARTLY_DELIVERED = "PARTLY_DELIVERED"
    FAILED = "FAILED"
    RETRYING = "RETRYING"
    QUEUED = "QUEUED"
    SENDING = "SENDING"
    FILTERED = "FILTERED"
    ERROR = "ERROR"

    choices = [
        (RECEIVED, "Received"),
        (DELIVERED, "Delivered"),
        (PARTLY_DELIVERED, "Partly delivered"),
        (FAILED, "Failed"),
        (RETRYING, "Retrying"),
        (QUEUED, "Queued"),
        (SENDING, "Sending"),
        (FILTERED, "Filtered"),
        (ERROR, "Error"),
    ]
    labels = dict(choices)
    values = [value for value, _ in choices]


D = Delivery.Status
_ROUTED = Q(status=Message.Status.PROCESSED)


def _has(*statuses: str) -> Exists:
    return Exists(Delivery.objects.filter(message_id=OuterRef("pk"), status__in=statuses))


def _conditions() -> list[tuple[str, Q]]:
    """Each outcome's condition, in order: the first that holds is the message's outcome."""
    failed, delivered = _has(D.FAILED), _has(D.DELIVERED)
    return [
        (Outcome.RECEIVED, Q(status=Message.Status.RECEIVED)),
        (Outcome.ERROR, Q(status=Message.Status.ERROR)),
        (Outcome.FILTERED, Q(status=Message.Status.FILTERED)),
        (Outcome.PARTLY_DELIVERED, _ROUTED & Q(failed) & Q(delivered)),
        (Outcome.FAILED, _ROUTED & Q(failed)),
        (Outcome.RETRYING, _ROUTED & Q(_has(D.RETRY))),
        (Outcome.QUEUED, _ROUTED & Q(_has(D.QUEUED))),
        (Outcome.SENDING, _ROUTED & Q(_has(D.PENDING, D.SENDING))),
        (Outcome.DELIVERED, _ROUTED),
    ]


def annotate(messages):
    """``messages`` with ``outcome``: one CASE per row, computed only for the rows returned."""
    whens = [When(condition, then=Value(name)) for name, condition in _conditions()]
    return messages.annotate(outcome=Case(*whens, default=Value(""), output_field=CharField()))


def matching(outcome: str) -> Q:
    """The condition for messages whose outcome is ``outcome`` (a filter the planner turns into
    semi-joins on the delivery indexes, not a CASE evaluated on every row)."""
    condition = Q()
    for name, holds in _conditions():
        if name == outcome:
            return condition & holds
        condition &= ~holds
    raise ValueError(f"unknown outcome {outcome!r}")


def of(status: str, delivery_states: Iterable[str]) -> str:
    """The outcome of a message in ``status`` whose deliveries are in ``delivery_states``."""
    states = set(delivery_states)
    if status != Message.Status.PROCESSED:
        return status
    if D.FAILED in states:
        return Outcome.PARTLY_DELIVERED if D.DELIVERED in states else Outcome.FAILED
    for state, outcome in ((D.RETRY, Outcome.RETRYING), (D.QUEUED, Outcome.QUEUED)):
        if state in states:
            return outcome
    if states & {D.PENDING, D.SENDING}:
        return Outcome.SENDING
    return Outcome.DELIVERED


def destination_states(message_ids) -> dict[int, list[dict]]:
    """Each message's per-destination states, in one query."""
    found: dict[int, list[dict]] = {}
    rows = (
        Delivery.objects.filter(message_id__in=list(message_ids))
        .order_by("id")
        .values("message_id", "destination_id", "destination__name", "status", "attempt_count")
    )
    for row in rows:
        found.setdefault(row["message_id"], []).append(
            {
                "destination": row["destination_id"],
                "destination_name": row["destination__name"],
                "status": row["status"],
                "label": Delivery.Status(row["status"]).label,
                "attempts": row["attempt_count"],
            }
        )
    return found
