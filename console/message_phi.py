"""The PHI values of the messages a page or an API response is about, read from the database once
per response (one query for a whole list), for ``console.phi.mask_free_text``: from each body
and from the business keys stored at processing (``adapters.keys``) that name the patient."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import OuterRef

from adapters import keys
from channels_app.models import Message, MessageKey
from console.phi import UNKNOWN_PHI, MessagePhi, message_phi

BODY_FIELDS = ("id", "raw", "canonical", "canonical_sealed", "content_type", "pruned_at")


def phi_of(message: Message, known: Iterable[str] = ()) -> MessagePhi:
    """One message's PHI values, from its body and canonical FHIR (opened when sealed) and the
    ``known`` values of its keys; unknown once pruned."""
    if message.pruned_at:
        return UNKNOWN_PHI
    return message_phi(message.raw_text, message.canonical_json, message.content_type, known=known)


def phi_by_message(ids: Iterable[int]) -> dict[int, MessagePhi]:
    """The PHI values of each message named, its keys' values included, in one query."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = (
        Message.objects.filter(pk__in=wanted)
        .only(*BODY_FIELDS)
        .annotate(key_values=ArraySubquery(_phi_keys(OuterRef("pk"))))
    )
    return {m.pk: phi_of(m, m.key_values) for m in rows}


def key_values(message_id: int) -> list[str]:
    """The values of one message's keys that name its patient (for a page about one message)."""
    return list(_phi_keys(message_id).values_list("value", flat=True))


def _phi_keys(message_id):
    return MessageKey.objects.filter(message_id=message_id, kind__in=keys.PHI_KINDS).values("value")


def phi_of_message_id(message_id: int) -> MessagePhi:
    return phi_by_message([message_id]).get(message_id, UNKNOWN_PHI)
