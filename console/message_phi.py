"""The PHI values of the messages a page or an API response is about, read from the database once
per response (one query for a whole list), for ``console.phi.mask_free_text``."""

from __future__ import annotations

from collections.abc import Iterable

from channels_app.models import Message
from console.phi import UNKNOWN_PHI, MessagePhi, message_phi

BODY_FIELDS = ("id", "raw", "canonical", "canonical_sealed", "content_type", "pruned_at")


def phi_of(message: Message) -> MessagePhi:
    """One message's PHI values, from its body and canonical FHIR (opened when sealed); unknown
    once pruned."""
    if message.pruned_at:
        return UNKNOWN_PHI
    return message_phi(message.raw_text, message.canonical_json, message.content_type)


def phi_by_message(ids: Iterable[int]) -> dict[int, MessagePhi]:
    """The PHI values of each message named, in one query."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = Message.objects.filter(pk__in=wanted).only(*BODY_FIELDS)
    return {m.pk: phi_of(m) for m in rows}


def phi_of_message_id(message_id: int) -> MessagePhi:
    return phi_by_message([message_id]).get(message_id, UNKNOWN_PHI)
