"""HTTP inbound source: what a sender POSTs to an HTTP channel, read and stored.

HL7 v2, FHIR JSON (a resource or a Bundle) or, to a channel with a JSON map, custom JSON. A
message that cannot be read is still stored, with its error, and refused with the reason, so
nothing a sender sent is lost and the console shows what went wrong. The REST view
(`console/api/inbound.py`) parses the request and answers; everything else happens here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import connection, transaction

from adapters.base import AdapterError
from adapters.codecs import custom_json, fhir_json
from adapters.codecs.hl7v2_ack import Header
from adapters.transports.mllp import KEEP_OF_OVERSIZE
from channels_app import events
from channels_app.models import Channel
from channels_app.pipeline import ingest
from channels_app.sources import json_map
from channels_app.sources.mllp import storable

log = logging.getLogger(__name__)

HL7_TYPES = (ingest.HL7_V2, "application/hl7-v2", "text/plain")
FHIR_TYPES = ("application/fhir+json", "application/json")
FHIR_JSON = fhir_json.MEDIA_TYPE
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Sender:
    """Who posted, as ingest records it."""

    remote_addr: str
    account: str  # the service account's name: stable across token rotation
    idempotency_key: str = ""  # plays MSH-10's part for JSON: a repeat is a duplicate


class Refused(Exception):
    """The request is refused with ``status`` and ``detail`` (a 4xx, nothing stored)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class Oversize(Refused):
    """Larger than the channel takes: answered 413, but kept like an oversize MLLP frame (its
    head, with the error), so the console shows what was refused."""


def check_request(channel: Channel, raw: bytes) -> None:
    """Refused unless ``channel`` takes HTTP messages and ``raw`` is a body it can take."""
    if channel.source_type != Channel.SourceType.HTTP or not channel.enabled:
        raise Refused(409, f"channel {channel.pk} does not accept HTTP messages")
    if not raw.strip():
        raise Refused(400, "the body is empty")
    if len(raw) > channel.max_message_bytes:
        raise Oversize(413, f"the body is larger than {channel.max_message_bytes} bytes")


def takes_json(channel: Channel) -> bool:
    """The channel decides, not the body: one with a JSON map takes custom JSON only."""
    return json_map.takes_json(channel.source_config)


def check_json_channel(channel: Channel, media: str) -> None:
    if media != JSON:
        raise Refused(415, f"channel {channel.pk} takes custom JSON: send it as {JSON}")
    try:
        json_map.channel_map(channel.source_config)
    except custom_json.JsonMapError as exc:  # the channel's fault, not the sender's: not stored
        log.warning("channel %s refuses custom JSON: %s", channel.pk, exc)
        raise Refused(409, f"channel {channel.pk} cannot map custom JSON: {exc}") from exc


def read_hl7(raw: bytes, channel: Channel, sender: Sender) -> ingest.Inbound:
    return ingest.read_inbound(raw, **_common(channel, sender))


def read_fhir(raw: bytes, channel: Channel, sender: Sender) -> ingest.Inbound | None:
    """None for JSON that is not FHIR; otherwise an Inbound, with its error if invalid."""
    item = ingest.Inbound(raw=raw, **_common(channel, sender), content_type=FHIR_JSON)
    try:
        bundle = fhir_json.read(raw)
    except fhir_json.NotFhir:
        return None
    except ValueError as exc:  # not JSON at all
        item.error, item.error_stage = exc, "parse"
        return item
    except AdapterError as exc:  # the validator names the field and its path
        item.error, item.error_stage = exc, "validate"
        bundle = {}
    entries = bundle.get("entry") or [{}]
    first = (entries[0] or {}).get("resource") or {}
    item.message_type = f"{bundle.get('resourceType', 'JSON')}:{first.get('resourceType', '')}"[:40]
    _keyed_by_sender(item, sender)
    return item


def read_custom_json(raw: bytes, channel: Channel, sender: Sender) -> ingest.Inbound:
    """Checked to be JSON only: the channel's map runs in the process stage, like a v2 map."""
    item = ingest.Inbound(raw=raw, **_common(channel, sender), content_type=custom_json.MEDIA_TYPE)
    try:
        custom_json.read(raw)
    except custom_json.NotJson as exc:
        item.error, item.error_stage = exc, "parse"
    item.message_type = "JSON"
    _keyed_by_sender(item, sender)
    return item


def store(item: ingest.Inbound) -> ingest.Stored:
    """Commit ``item`` (the HTTP twin of an MLLP AA comes after this); a fresh, readable message
    is handed to the workers once the transaction commits."""
    with transaction.atomic(), connection.cursor() as cursor:
        [stored] = ingest.store_now(cursor, [item])
        if stored.message_id and not item.error:
            transaction.on_commit(lambda: _dispatch(stored.message_id))
    events.received([item], [stored])
    return stored


def store_oversize(raw: bytes, channel: Channel, sender: Sender, media: str, reason: str):
    item = ingest.framing_error(raw[:KEEP_OF_OVERSIZE], reason, **_common(channel, sender))
    item.content_type = FHIR_JSON if media in FHIR_TYPES else HL7_TYPES[0]
    return store(storable(item))


def error_answer(item: ingest.Inbound) -> tuple[int, str]:
    """The status and reason for a message stored with its error."""
    where = getattr(item.error, "target", "") or getattr(item.error, "location", "")
    status = 422 if item.error_stage == "validate" else 400
    return status, f"{item.error_stage} error{f' at {where}' if where else ''}: {item.error}"


def _common(channel: Channel, sender: Sender) -> dict:
    version = channel.current_version()
    return {
        "channel_id": channel.pk,
        "channel_version_id": version.pk if version else None,
        "dedupe_window_s": channel.dedupe_window_s,
        "remote_addr": sender.remote_addr,
    }


def _keyed_by_sender(item: ingest.Inbound, sender: Sender) -> None:
    item.header = Header(
        control_id=sender.idempotency_key[:200], sending_application=sender.account[:200]
    )


def _dispatch(message_id: int) -> None:
    try:
        events.enqueue_processing([message_id])
    except Exception as exc:  # the broker is down: the sweeper picks the message up
        log.warning(
            "could not enqueue message %s for processing (%s); the sweeper will", message_id, exc
        )
