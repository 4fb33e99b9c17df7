"""The one way messages are chosen: the Messages page, ``GET /api/v1/messages/`` and a bulk
replay (page and API) all read their filters through ``MessageFilter``, so "replay all matching"
selects what the list shows. A value it does not know is an error naming the filter, never
ignored."""

from __future__ import annotations

import re

import django_filters
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import Exists, F, Lookup, OuterRef, Q

from adapters import keys
from channels_app import outcome
from channels_app.models import Channel, Delivery, Destination, Message, MessageKey

ERROR_STAGES = [
    ("framing", "Framing"),
    ("parse", "Parse"),
    ("unseal", "Unseal"),
    ("map", "Map"),
    ("validate", "Validate"),
    ("route", "Route"),
]
# The outcomes, and the pipeline's own "routed" (whatever became of the deliveries since).
ROUTED = Message.Status.PROCESSED
STATUSES = [*outcome.Outcome.choices, (ROUTED, "Routed (any delivery state)")]
FAILED_DELIVERY = "failed"
DELIVERY_STATES = [(FAILED_DELIVERY, "Has a failed delivery"), *Delivery.Status.choices]
# The words of a search: a name may be typed "Smith John" or "smith, j".
_WORDS = re.compile(r"[\s,]+")
MAX_WORDS = 4
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class MessageFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    channel = django_filters.ModelChoiceFilter(queryset=Channel.objects.only("id", "name"))
    type = django_filters.CharFilter(method="by_type", label="Message type")
    trigger = django_filters.CharFilter(method="by_trigger", label="Trigger event")
    status = django_filters.ChoiceFilter(choices=STATUSES, method="by_outcome")
    error_stage = django_filters.ChoiceFilter(choices=ERROR_STAGES)
    destination = django_filters.ModelChoiceFilter(
        queryset=Destination.objects.only("id", "name"),
        field_name="deliveries__destination",  # as the schema names its type
        method="by_destination",
    )
    delivery = django_filters.ChoiceFilter(choices=DELIVERY_STATES, method="by_delivery")
    received_after = django_filters.DateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.DateTimeFilter(field_name="received_at", lookup_expr="lt")
    control_id = django_filters.CharFilter(field_name="control_id")

    class Meta:
        model = Message
        fields: list[str] = []

    def search(self, messages, name, value):
        """Every word is a key the message carries: exactly (an MRN, an order, accession or
        visit number, a birth date) or by its beginning (a name, a control id)."""
        words = sorted(_words(value), key=len, reverse=True)  # the longest finds the fewest
        if not words:
            return messages
        first, *others = words
        # The first word's messages are gathered from the key index alone and compared as an
        # array: they are then read newest first, only until the page is full (``id IN (...)``
        # joined every match before sorting: half a second for a short name prefix among a
        # million). Each other word is looked for among the keys of each message read, in the
        # index by message.
        messages = messages.filter(_any_of(_carrying(first)))
        for word in others:
            carried = Q(normalised=word) | Q(
                kind__in=keys.PREFIX_KINDS, normalised__startswith=word
            )
            messages = messages.filter(
                Exists(MessageKey.objects.filter(carried, message_id=OuterRef("pk")))
            )
        return messages

    def by_type(self, messages, name, value):
        code = value.strip().upper()
        return messages.filter(Q(message_type=code) | Q(message_type__startswith=f"{code}^"))

    def by_trigger(self, messages, name, value):
        return messages.filter(message_type__endswith=f"^{value.strip().upper()}")

    def by_outcome(self, messages, name, value):
        if value == ROUTED:
            return messages.filter(status=ROUTED)
        return messages.filter(outcome.matching(value))

    def by_destination(self, messages, name, value):
        return messages.filter(_deliveries(destination_id=value.pk))

    def by_delivery(self, messages, name, value):
        state = Delivery.Status.FAILED if value == FAILED_DELIVERY else value
        return messages.filter(_deliveries(status=state))


def listed_messages():
    """Messages as lists show them: no bodies, with their outcome."""
    messages = Message.objects.select_related("channel").defer(
        "raw", "canonical", "canonical_sealed", "issues"
    )
    return outcome.annotate(messages)


class _AnyOf(Lookup):
    """``id = ANY(ARRAY(subquery))``: the ids are gathered first, then the messages read by the
    primary key index in its order (Django would write ``= (ANY(...))``)."""

    lookup_name = "any_of"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = compiler.compile(self.rhs)
        return f"{lhs} = ANY({rhs})", (*lhs_params, *rhs_params)


def _carrying(word: str):
    """The ids of the messages with a key that is ``word``, or begins with it for a name or a
    control id: two index-only scans (an OR of both would read the table for every key)."""
    exact = MessageKey.objects.filter(normalised=word).values("message_id")
    prefix = MessageKey.objects.filter(kind__in=keys.PREFIX_KINDS, normalised__startswith=word)
    return exact.union(prefix.values("message_id"), all=True)


def _any_of(ids) -> _AnyOf:
    return _AnyOf(F("id"), ArraySubquery(ids))


def _deliveries(**where) -> Exists:
    return Exists(Delivery.objects.filter(message_id=OuterRef("pk"), **where))


def _words(text: str) -> list[str]:
    cleaned = keys.normalise(text.replace("\x00", ""))
    words = [w for w in _WORDS.split(cleaned) if w][:MAX_WORDS]
    # A date typed as 1975-12-31 is a birth date, stored as v2 writes it (19751231).
    return [w.replace("-", "") if _ISO_DATE.fullmatch(w) else w for w in words]


def given(filterset: MessageFilter) -> dict:
    """The filters set, as given (for an audit entry and a replay job's selection)."""
    return {
        name: value for name, value in filterset.data.items() if name in filterset.filters and value
    }


def errors(filterset: MessageFilter) -> dict[str, list[str]]:
    """Each refused filter and why, the value quoted back."""
    return {
        name: [f"{filterset.data.get(name)!r}: {problem}" for problem in problems]
        for name, problems in filterset.errors.items()
    }
