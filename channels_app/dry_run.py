"""A dry run: what the channel would make of one message, without storing it or sending it.

The one function the test bench page, the REST API and the regression suite call. It takes the
path a stored message takes (process.convert_message and process.route_message on an unsaved
Message), then asks each routed destination's transport what it would put on the wire
(``Transport.encode``). Nothing is written: no Message row, no Delivery, no file, no request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from django.db import DataError, connection, transaction

from adapters.base import AdapterError
from adapters.codecs import custom_json, exact_json, fhir_json, hl7v2
from adapters.codecs.hl7v2_tree import parse_tree
from adapters.registry import build_transport
from adapters.transports.base import Payload
from channels_app.field_rules import ChannelRules
from channels_app.models import Channel, Destination, Message
from channels_app.models.samples import DRY_RUN_NAME, stable
from channels_app.pipeline import process
from channels_app.sealing import SealError, open_config
from channels_app.sealing import enabled as sealing_enabled
from channels_app.sources import json_map

HL7_V2 = "x-application/hl7-v2+er7"
CONTENT_TYPES = (HL7_V2, fhir_json.MEDIA_TYPE, custom_json.MEDIA_TYPE)
# What a dry run's payload is named by: a file destination's {name}, {key}, {message_id}, {date}.
DRY_RUN_KEY = "dry-run"
DRY_RUN_DATE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class DryRun:
    content_type: str
    parse_tree: list[dict] | None = None
    bundle: dict | None = None
    issues: list[dict] = field(default_factory=list)
    routing: list[dict] = field(default_factory=list)
    outputs: dict[str, dict] = field(default_factory=dict)
    error: dict | None = None  # {"stage", "where", "detail"}: what stopped the message

    def as_dict(self) -> dict:
        return asdict(self)

    def comparable(self) -> dict:
        """What the regression suite compares and a sample accepts (the parse tree follows from
        the raw message, which the sample keeps)."""
        found = self.as_dict()
        del found["parse_tree"], found["content_type"]
        return stable(found)


def content_type_of(channel: Channel, raw: bytes) -> str:
    """The type the channel would take ``raw`` as: its custom JSON, FHIR JSON, or HL7 v2."""
    if json_map.takes_json(channel.source_config):
        return custom_json.MEDIA_TYPE
    return fhir_json.MEDIA_TYPE if raw.lstrip()[:1] in (b"{", b"[") else HL7_V2


def dry_run(
    channel: Channel,
    raw: bytes | str,
    content_type: str = "",
    *,
    mapping: dict | None = None,
    destinations: list[Destination] | None = None,
) -> DryRun:
    """Parse, convert, validate and route ``raw`` as ``channel`` would, and encode it for each
    routed destination. An unreadable message answers with the codec's error and its place.
    ``mapping`` (checked) stands in for the channel's field rules: a rule's preview.
    ``destinations`` (unsaved, say, with ``channel`` a copy): run as if they were the channel's
    (a draft's preview); by default the channel's own."""
    if isinstance(raw, str):
        raw = raw.encode()
    message = Message(channel=channel, raw=raw, content_type=content_type)
    message.content_type = content_type or content_type_of(channel, raw)
    result = DryRun(message.content_type)
    if message.content_type == HL7_V2:
        _read_header(message, result)
    if message.status != Message.Status.ERROR:
        rules = ChannelRules({channel.pk: channel.mapping if mapping is None else mapping})
        parsed = process.convert_message(message, json_map.JsonMaps.of(channel), rules)
        result.bundle, result.issues = message.canonical, list(message.issues or [])
        if parsed is not None and result.parse_tree is None:
            result.parse_tree = parse_tree(parsed)
    if message.status != Message.Status.ERROR:
        if destinations is None:
            destinations = list(channel.destinations.all())
        destinations = sorted(
            (d for d in destinations if d.enabled), key=lambda d: (d.name, d.pk or 0)
        )
        routed = process.route_message(message, destinations)
        result.routing = list(message.routing or [])
        if message.status != Message.Status.ERROR:
            result.outputs = {d.name: _output(d, message) for d in routed}
    if message.status == Message.Status.ERROR:
        result.error = {
            "stage": message.error_stage,
            "where": message.error_path,
            "detail": message.error_detail,
        }
    return result


def _read_header(message: Message, result: DryRun) -> None:
    """The v2 header the rules see (ingest reads it on arrival), and the tree; a message that
    cannot be read stops here with the codec's segment and field."""
    try:
        parsed = hl7v2.parse(message.raw)
    except hl7v2.HL7Error as exc:
        message.record_error("parse", exc, exc.location)
        return
    message.message_type = parsed.message_type
    message.sending_application = parsed.sending_application
    message.sending_facility = parsed.sending_facility
    result.parse_tree = parse_tree(parsed)


def stored_text(bundle: dict) -> str:
    """The Bundle as a destination gets it: the text the database gives back for the stored
    value (jsonb orders keys its own way), or the sealed form's JSON when sealing is on."""
    if sealing_enabled():
        return exact_json.dumps(bundle, ensure_ascii=False, separators=(",", ":"))
    text = exact_json.dumps(bundle, ensure_ascii=False)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT %s::jsonb::text", [text])
            return cursor.fetchone()[0]
    except DataError:  # e.g. a \u0000 jsonb refuses: the message could not be stored either
        return text


def _output(destination: Destination, message: Message) -> dict:
    """What ``destination`` would receive: its body as text, media type and target, or why not."""
    payload = Payload(
        body=stored_text(message.canonical).encode(),
        content_type=fhir_json.MEDIA_TYPE,
        idempotency_key=DRY_RUN_KEY,
        name=DRY_RUN_NAME,
        source=bytes(message.raw),
    )
    try:
        transport = build_transport(
            destination.transport, open_config(destination.transport, destination.config)
        )
        encode = transport.encode
        encoded = (
            encode(payload, when=DRY_RUN_DATE)
            if destination.transport == Destination.Transport.FILE
            else encode(payload)
        )
    except (AdapterError, SealError, ValueError) as exc:
        return {"transport": destination.transport, "error": str(exc)}
    return {
        "transport": destination.transport,
        "content_type": encoded.content_type,
        "target": encoded.target,
        "body": encoded.body.decode("utf-8", errors="replace"),
    }
