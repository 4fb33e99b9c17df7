"""Stage 2: parse, convert to canonical FHIR, validate, and create one Delivery per destination."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from operator import itemgetter
from typing import NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from adapters import keys, mapping
from adapters.base import AdapterError
from adapters.codecs import custom_json, exact_json, fhir_json, hl7v2
from adapters.routing import RuleError, Verdict, header_variables
from channels_app import events, field_rules
from channels_app.models import Channel, Delivery, Destination, Message
from channels_app.pipeline import lanes, prepared
from channels_app.pipeline.deliver import LANE_HEAD
from channels_app.routing import routing_table
from channels_app.sealing import SealError, seal_many, unseal
from channels_app.sealing import enabled as sealing_enabled
from channels_app.sources import json_map

# A batch is topped up to this size with messages whose own task is this late (a backlog).
BATCH_MAX = 50
LATE_AFTER = timedelta(milliseconds=250)

LATER_IN_LANES = f"""
SELECT d.id FROM channels_app_delivery AS d
WHERE d.destination_id = ANY(%(destinations)s) AND d.status = 'PENDING'
  AND d.ordering_key <> '' AND d.message_id > %(first)s AND d.id <> ALL(%(created)s)
  AND {LANE_HEAD}
ORDER BY d.message_id LIMIT %(limit)s
"""

# The batch's outcomes in one UPDATE, its rows passed as one JSON document (Django's bulk_update
# builds a CASE per field and row, and arrays of large JSON values are slow to escape). Sealed
# bundles come beside it as a bytea array in binary form (%b), row for row: inside the JSON
# they would be base64, parsed and decoded again by the server.
SAVE_OUTCOMES = """
UPDATE channels_app_message AS m
SET status = o.status, canonical = o.canonical, canonical_sealed = o.sealed, issues = o.issues,
    processed_at = o.processed_at, error_stage = o.error_stage, error_class = o.error_class,
    error_path = o.error_path, error_detail = o.error_detail, routing = o.routing
FROM ROWS FROM (
    jsonb_to_recordset(%(outcomes)s::jsonb) AS (
        id bigint, status text, canonical jsonb, issues jsonb, processed_at timestamptz,
        error_stage text, error_class text, error_path text, error_detail text, routing jsonb),
    unnest(%(sealed)b::bytea[])
) AS o(id, status, canonical, issues, processed_at, error_stage, error_class, error_path,
       error_detail, routing, sealed)
WHERE m.id = o.id
"""


def process_messages(ids: list[int]) -> list[int]:
    """Process the RECEIVED messages among ``ids``; returns the ids of the deliveries to send
    (those to a paused destination or channel are created QUEUED and wait for its resume).

    Idempotent: rows already processed, or being processed by another worker (locked), are
    skipped. Everything happens in one transaction, so a worker killed half-way leaves the
    messages RECEIVED for the sweeper, never half-routed. When there is a backlog, the batch is
    topped up with other late messages: tasks grow with the load, and the tasks that were
    meant for those messages find nothing left to do.
    """
    with transaction.atomic():
        messages = _claim(ids)
        if not messages:
            return []
        destinations, rules, json_maps = _channels({m.channel_id for m in messages})
        again = [m.id for m in messages if m.processed_at is not None]  # replays
        now = timezone.now()
        deliveries: list[NewDelivery] = []
        found_keys: dict[int, list[keys.Key]] = {}
        for message in messages:
            parsed = convert_message(message, json_maps, rules)
            message.processed_at = now
            found_keys[message.id] = _keys_of(message, parsed)
            if message.status == Message.Status.ERROR:
                continue
            targets = route_message(message, destinations.get(message.channel_id, []))
            if message.status == Message.Status.ERROR:
                continue
            if not targets:
                message.status = Message.Status.FILTERED
                continue
            message.status = Message.Status.PROCESSED
            deliveries += [_delivery(message, d, parsed, now) for d in targets]
        created = _save(messages, found_keys, deliveries, again)
    events.processed(messages)
    return [d.id for d in created if d.status == Delivery.Status.PENDING] + _lanes_unblocked(
        created
    )


def _keys_of(message: Message, parsed: hl7v2.Message | None) -> list[keys.Key]:
    """Read from the v2 message when it came as v2, else from the canonical Bundle it became."""
    if isinstance(parsed, hl7v2.Message):
        return keys.extract(parsed)
    if isinstance(message.canonical, dict):
        return keys.from_bundle(message.canonical, message.control_id)
    return []


# A replayed message (reprocess) may have deliveries already: a FAILED one is sent again with
# the new canonical content and a fresh attempt budget (its attempts stay); one delivered or
# still open is left alone. Only rows inserted or reset come back, so only they are enqueued.
# A delivery is due as soon as it is made.
CREATE_DELIVERIES = """
INSERT INTO channels_app_delivery AS d (
    message_id, destination_id, status, attempt_count, attempts_at_replay, created_at,
    next_attempt_at, last_error, ordering_key)
SELECT message_id, destination_id, status, 0, 0, created_at, created_at, '', ordering_key
FROM jsonb_to_recordset(%(deliveries)s::jsonb) AS n(
    message_id bigint, destination_id bigint, status text, ordering_key text, created_at timestamptz)
ON CONFLICT (message_id, destination_id) DO UPDATE
SET status = EXCLUDED.status, next_attempt_at = EXCLUDED.next_attempt_at,
    ordering_key = EXCLUDED.ordering_key, attempts_at_replay = d.attempt_count,
    delivered_at = NULL
WHERE d.status = 'FAILED'
RETURNING d.id, d.message_id, d.destination_id, d.status, d.ordering_key
"""


class NewDelivery(NamedTuple):
    """A delivery the batch routes a message to: a row to insert (a tuple, where a model
    instance cost 10 us each)."""

    message_id: int
    destination_id: int
    status: str
    ordering_key: str
    created_at: datetime


class Created(NamedTuple):
    """A delivery row the save inserted or reset."""

    id: int
    message_id: int
    destination_id: int
    status: str
    ordering_key: str


def _delivery_rows(deliveries: list[NewDelivery]) -> str:
    # One JSON document, as the outcomes and keys: five arrays cost psycopg about 1 us an element
    # to adapt (20 us a message), msgspec a tenth of that to write.
    return exact_json.encode([d._asdict() for d in deliveries]).decode()


# A message processed again (a replay) has its keys replaced, not added to. Only those can have
# keys; a first processing (nearly every batch) skips the delete whatever plan it has, by a test
# made once per statement, not a probe of the keys' index per message.
SAVE_KEYS = """
gone AS (
    DELETE FROM channels_app_messagekey
    WHERE cardinality(%(again)s::bigint[]) > 0 AND message_id = ANY(%(again)s::bigint[])),
keyed AS (
    INSERT INTO channels_app_messagekey (message_id, kind, value, authority, normalised)
    SELECT * FROM jsonb_to_recordset(%(keys)s::jsonb)
        AS k(message_id bigint, kind text, value text, authority text, normalised text))
"""

# Outcomes, keys and deliveries of a batch: one statement, one round trip.
SAVE = f"WITH saved AS ({SAVE_OUTCOMES}), {SAVE_KEYS} {CREATE_DELIVERIES}"


def _save(
    messages: list[Message],
    found: dict[int, list[keys.Key]],
    deliveries: list[NewDelivery],
    again: list[int],
) -> list[Created]:
    """Store the batch's outcomes and keys (replacing those of the messages processed ``again``),
    and create its deliveries; returns the deliveries inserted or reset (by id)."""
    params = {
        "outcomes": _outcome_rows(messages),
        "sealed": _sealed_bundles(messages),
        "again": again,
        "keys": _key_rows(found),
        "deliveries": _delivery_rows(deliveries),
    }
    with prepared.cursor() as cursor:
        cursor.execute(SAVE, params)
        rows = cursor.fetchall()
    return [Created(*row) for row in sorted(rows)]


def _key_rows(found: dict[int, list[keys.Key]]) -> str:
    # One JSON document: quoting each element of five text arrays (client-side) cost more.
    return exact_json.encode(
        [
            {"message_id": message_id, **key._asdict()}
            for message_id, found_keys in found.items()
            for key in found_keys
        ]
    ).decode()


def _delivery(message: Message, destination: Destination, parsed, now) -> NewDelivery:
    held = destination.paused or destination.channel.paused
    return NewDelivery(
        message_id=message.id,
        destination_id=destination.id,
        status=Delivery.Status.QUEUED if held else Delivery.Status.PENDING,
        ordering_key=lanes.key_for(parsed, destination.ordering_key),
        created_at=now,
    )


def _lanes_unblocked(deliveries: list[Created]) -> list[int]:
    """Ordered deliveries of later messages that may have waited for these messages to be routed
    (a lane waits for every earlier unrouted message of its channel): enqueue them again. Asked
    after the commit, so that whichever transaction commits last sees the other's rows."""
    ordered = [d for d in deliveries if d.ordering_key]
    if not ordered:
        return []
    with prepared.cursor() as cursor:
        cursor.execute(
            LATER_IN_LANES,
            {
                "destinations": sorted({d.destination_id for d in ordered}),
                "first": min(d.message_id for d in ordered),
                "created": [d.id for d in ordered],
                "limit": BATCH_MAX * 4,
            },
        )
        return [row[0] for row in cursor.fetchall()]


# What a claim loads of each message (the processing reads no other column).
CLAIMED = [
    Message._meta.get_field(name)
    for name in (
        "id", "channel", "raw", "content_type", "status", "canonical", "issues", "message_type",
        "sending_application", "sending_facility", "control_id", "received_at", "processed_at",
    )
]  # fmt: skip


def _column_source(field) -> Callable[[tuple], object]:
    """How a claimed row gives ``field``'s value: its column as the ORM would load it (JSON
    through the field's decoder), or the field's default for a column the claim leaves out."""
    if field in CLAIMED:
        at = CLAIMED.index(field)
        decode = getattr(field, "from_db_value", None)
        if decode is None:
            return itemgetter(at)
        return lambda row: decode(row[at], None, connection)
    if field.has_default() and callable(field.default):  # a fresh list, the time now
        return lambda row: field.get_default()
    default = field.get_default()
    return lambda row: default


# Every column of the model, in its order: a Message built positionally costs a third of one
# built by keywords (6 against 19 us), once per message.
_SOURCES = [_column_source(field) for field in Message._meta.concrete_fields]

# The given messages still RECEIVED, topped up (a backlog) with others whose own task is late;
# rows another worker holds are skipped. Raw SQL: the ORM's compiling cost more than the claim.
# Both parts by index (an OR of the two would walk every RECEIVED row: a backlog's cost squared).
CLAIM = f"""
WITH late AS (
    SELECT id FROM channels_app_message
    WHERE status = 'RECEIVED' AND sweep_after < %(late)s AND id <> ALL(%(ids)s::bigint[])
    ORDER BY sweep_after LIMIT %(room)s FOR UPDATE SKIP LOCKED
)
SELECT {", ".join(field.column for field in CLAIMED)}
FROM channels_app_message
WHERE id = ANY(%(ids)s::bigint[] || ARRAY(SELECT id FROM late)) AND status = 'RECEIVED'
ORDER BY id
FOR UPDATE SKIP LOCKED
"""


def _claim(ids: list[int]) -> list[Message]:
    params = {
        "ids": list(ids),
        "late": timezone.now() - LATE_AFTER,
        "room": max(0, BATCH_MAX - len(ids)),
    }
    with prepared.cursor() as cursor:
        cursor.execute(CLAIM, params)
        rows = cursor.fetchall()
    return [_claimed(row) for row in rows]


def _claimed(row: tuple) -> Message:
    return Message(*(source(row) for source in _SOURCES))


def _outcome_rows(messages: list[Message]) -> str:
    # Sealed at rest when a key is set: the bundle goes to canonical_sealed (`_sealed_bundles`)
    # and canonical stays null.
    sealing = sealing_enabled()
    rows = [
        {
            "id": m.id,
            "status": m.status,
            "canonical": None if sealing else m.canonical,
            "issues": m.issues or [],
            "processed_at": m.processed_at.isoformat(),
            "error_stage": m.error_stage,
            "error_class": m.error_class,
            "error_path": m.error_path,
            "error_detail": m.error_detail,
            "routing": m.routing or [],
        }
        for m in messages
    ]
    # exact_json: a decimal keeps its written digits in the stored jsonb (1.50 stays 1.50)
    return exact_json.encode(rows).decode()


def _sealed_bundles(messages: list[Message]) -> list[bytes | None]:
    """Each message's bundle sealed, in the order of `_outcome_rows` (all None unsealed); the
    batch's nonces in one call (`seal_many`)."""
    if not sealing_enabled():
        return [None] * len(messages)
    sealed = iter(
        seal_many([exact_json.encode(m.canonical) for m in messages if m.canonical is not None])
    )
    return [None if m.canonical is None else next(sealed) for m in messages]


# Each channel of the batch with its field rules, its source settings and its enabled
# destinations (one row each, in the order of the ORM's Destination ordering within a channel; a
# row without one when none).
CHANNELS = """
SELECT c.id, c.paused, c.route_filter, c.mapping::text, c.source_config::text,
       d.id, d.name, d.paused, d.ordering_key, d.route_when
FROM channels_app_channel AS c
LEFT JOIN channels_app_destination AS d ON d.channel_id = c.id AND d.enabled
WHERE c.id = ANY(%s)
ORDER BY c.id, d.name
"""


DESTINATION_FIELDS = ("id", "name", "paused", "ordering_key", "route_when")


def _channels(
    channel_ids: set[int],
) -> tuple[dict[int, list[Destination]], field_rules.ChannelRules, json_map.JsonMaps]:
    """The enabled destinations of each channel (each with its channel's pause and filter), the
    channels' field rules and their source settings (JSON maps, profile, time zone): one query."""
    found: dict[int, list[Destination]] = defaultdict(list)
    mappings: dict[int, dict | None] = {}
    sources: dict[int, dict] = {}
    channels: dict[int, Channel] = {}
    with prepared.cursor() as cursor:
        cursor.execute(CHANNELS, [sorted(channel_ids)])
        rows = cursor.fetchall()
    for channel_id, paused, route_filter, mapping_text, source_text, *destination in rows:
        if channel_id not in channels:
            channels[channel_id] = Channel(id=channel_id, paused=paused, route_filter=route_filter)
            mappings[channel_id] = json.loads(mapping_text) if mapping_text else None
            sources[channel_id] = json.loads(source_text) if source_text else {}
        if destination[0] is None:
            continue
        target = Destination(**dict(zip(DESTINATION_FIELDS, destination, strict=True)))
        target.channel_id = channel_id
        target.channel = channels[channel_id]
        found[channel_id].append(target)
    return found, field_rules.ChannelRules(mappings), json_map.JsonMaps(sources)


def route_message(message: Message, targets: list[Destination]) -> list[Destination]:
    """The destinations the channel's rules send ``message`` to; the decision, with a reason per
    destination, is kept on the message. A rule that fails on it puts it in ERROR (stage route)
    and sends it nowhere."""
    message.routing = []
    if not targets:
        return []
    try:
        table = routing_table(message.channel_id, targets[0].channel.route_filter, targets)
    except RuleError as exc:  # stored before it was checked, or the engine changed since
        message.record_error("route", exc, "compiling the rules", _quoted(exc))
        return []
    verdict = table.decide(message.canonical, _header(message))
    message.routing = [d.as_dict() for d in verdict.decisions]
    if verdict.error is not None:
        _record_route_error(message, verdict)
        return []
    chosen = set(verdict.routed)
    return [d for d in targets if d.id in chosen]


def _header(message: Message) -> dict:
    """The v2 header as rule variables; empty for a message that did not come as HL7 v2 (its
    message_type column then names a JSON shape, not a v2 event)."""
    if message.content_type in (fhir_json.MEDIA_TYPE, custom_json.MEDIA_TYPE):
        return header_variables("", "", "")
    return header_variables(
        message.message_type, message.sending_application, message.sending_facility
    )


def _record_route_error(message: Message, verdict: Verdict) -> None:
    where = verdict.failed_rule
    if where != "channel filter":
        where = f"destination {where}: route_when"
    message.record_error("route", verdict.error, where, _quoted(verdict.error))


def _quoted(error: RuleError) -> str:
    return f"`{error.expression}`: {error.problem}"


def convert_message(
    message: Message,
    json_maps: json_map.JsonMaps | None = None,
    rules: field_rules.ChannelRules | None = None,
) -> hl7v2.Message | None:
    """Fill in the canonical bundle, or the error that stopped the message (with its place);
    returns the parsed message (its lanes and keys are read from it) when it got that far.
    An HL7 v2 message gets its channel's field rules after the built-in map."""
    message.error_stage = message.error_class = message.error_path = message.error_detail = ""
    try:
        raw = unseal(message.raw)
    except SealError as exc:  # a key was dropped too early: say so, keep the row for a replay
        message.record_error("unseal", exc)
        return
    if message.content_type == fhir_json.MEDIA_TYPE:
        return _read_fhir(message, raw)
    json_maps = json_maps or json_map.JsonMaps()
    if message.content_type == custom_json.MEDIA_TYPE:
        return json_map.convert(message, raw, json_maps)
    try:
        parsed = hl7v2.parse(raw)
    except hl7v2.HL7Error as exc:
        message.record_error("parse", exc, exc.location)
        return
    try:
        channel_rules = (rules or field_rules.ChannelRules()).get(message.channel_id)
    except field_rules.RuleError as exc:  # saved before a change to the rule engine
        message.record_error("map", exc, "field rules")
        return parsed
    try:  # with field rules, the Bundle is validated once they have run
        result = mapping.convert(
            parsed,
            check=not channel_rules,
            profile=json_maps.profile(message.channel_id),
            timezone=json_maps.timezone(message.channel_id),
        )
    except AdapterError as exc:
        path = getattr(exc, "field", "") or ""
        target = getattr(exc, "target", "") or ""
        where = " → ".join(p for p in (str(path), str(target)) if p)
        message.record_error("map", exc, where)
        return parsed  # its keys are still worth finding it by
    except Exception as exc:  # a bug in a map must not stop the batch: record it on the message
        message.record_error("map", exc, "", f"internal error in the canonical map: {exc!r}")
        return parsed
    message.canonical = result.bundle
    message.issues = [issue_dict(i) for i in result.issues]
    if channel_rules:
        field_rules.apply(message, parsed, channel_rules)
    return parsed


def _read_fhir(message: Message, raw: bytes) -> None:
    """FHIR JSON from an HTTP sender is canonical already, once valid (checked again here: the
    validator may have changed since the message was received)."""
    try:
        message.canonical = fhir_json.read(raw)
    except (ValueError, AdapterError) as exc:
        message.record_error("validate", exc, getattr(exc, "target", ""))


def issue_dict(issue) -> dict:
    return {
        key: str(getattr(issue, key, "") or "")
        for key in ("segment", "field", "value", "target", "reason", "origin", "severity")
    }
