"""HTTP inbound: a sender POSTs HL7 v2, FHIR JSON or (to a channel with a JSON map) custom JSON to
an HTTP channel with its service token.

202 with the message id once the message is committed (the HTTP twin of an MLLP AA); a message
that cannot be read is still stored, with its error, and answered 4xx with the reason, so nothing
a sender sent is lost and the console shows what went wrong.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import parsers, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from adapters.base import AdapterError
from adapters.codecs import custom_json, fhir_json
from adapters.codecs.hl7v2_ack import Header
from channels_app import events
from channels_app.models import Channel
from channels_app.pipeline import ingest, json_source
from console.roles import Role

log = logging.getLogger(__name__)

HL7_TYPES = ("x-application/hl7-v2+er7", "application/hl7-v2", "text/plain")
FHIR_TYPES = ("application/fhir+json", "application/json")
FHIR_JSON = fhir_json.MEDIA_TYPE
JSON = "application/json"


class RawBody(parsers.BaseParser):
    """Hands the body over untouched: the hub stores exactly what the sender sent."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read() if stream is not None else b""


Accepted = inline_serializer(
    "Accepted",
    {
        "message_id": serializers.IntegerField(allow_null=True),
        "status": serializers.CharField(),
        "duplicate": serializers.BooleanField(),
    },
)
Refused = inline_serializer(
    "Refused",
    {
        "detail": serializers.CharField(),
        "message_id": serializers.IntegerField(allow_null=True, required=False),
    },
)


class InboundView(APIView):
    """``POST /api/v1/channels/{id}/messages/`` with an HL7 v2 or FHIR JSON body, or custom JSON
    (``application/json``) to a channel whose ``source_config`` has ``"inbound": "json"``."""

    parser_classes = [RawBody]
    required_roles = {"post": Role.OPERATOR}

    @extend_schema(
        request={t: {"type": "string"} for t in (*HL7_TYPES, *FHIR_TYPES)},
        responses={
            202: Accepted,
            200: OpenApiResponse(Accepted, description="A duplicate: already received."),
            400: Refused,
            404: Refused,
            409: Refused,
            413: Refused,
            415: Refused,
            422: Refused,
        },
        examples=[OpenApiExample("HL7 v2", value="MSH|^~\\&|LAB|…", media_type=HL7_TYPES[0])],
    )
    def post(self, request, pk: int):
        channel = get_object_or_404(Channel, pk=pk)
        if channel.source_type != Channel.SourceType.HTTP or not channel.enabled:
            return _refuse(409, f"channel {channel.pk} does not accept HTTP messages")
        raw = request.data if isinstance(request.data, bytes) else b""
        if not raw.strip():
            return _refuse(400, "the body is empty")
        if len(raw) > channel.max_message_bytes:
            return _refuse(413, f"the body is larger than {channel.max_message_bytes} bytes")
        media = request.content_type.split(";")[0].strip().lower()
        if json_source.takes_json(channel.source_config):  # the channel decides, not the body
            refused = _json_refusal(channel, media)
            if refused is not None:
                return refused
            item = _read_custom_json(raw, channel, request)
            content_type = custom_json.MEDIA_TYPE
        elif media in HL7_TYPES:
            item = _read_hl7(raw, channel, request)
            content_type = HL7_TYPES[0]
        elif media in FHIR_TYPES:
            item = _read_fhir(raw, channel, request)
            content_type = FHIR_JSON
            if item is None:
                return _refuse(
                    415,
                    "JSON without a resourceType is not FHIR; custom JSON needs a channel"
                    ' configured for it ("inbound": "json" with a json_map), which this is not',
                )
        else:
            return _refuse(415, f"send HL7 v2 ({HL7_TYPES[0]}) or FHIR JSON ({FHIR_JSON})")
        stored = _store(item, content_type)
        events.received([item], [stored])
        if stored.duplicate:
            return Response({"message_id": None, "status": "DUPLICATE", "duplicate": True})
        if item.error:
            where = getattr(item.error, "target", "") or getattr(item.error, "location", "")
            return _refuse(
                422 if item.error_stage == "validate" else 400,
                f"{item.error_stage} error{f' at {where}' if where else ''}: {item.error}",
                message_id=stored.message_id,
            )
        transaction.on_commit(lambda: _dispatch(stored.message_id))
        response = Response(
            {"message_id": stored.message_id, "status": "RECEIVED", "duplicate": False},
            status=202,
        )
        response["Location"] = f"/api/v1/messages/{stored.message_id}/"
        return response


def _refuse(status: int, detail: str, **extra) -> Response:
    return Response({"detail": detail, **extra}, status=status)


def _common(channel: Channel, request) -> dict:
    version = channel.current_version()
    return {
        "channel_id": channel.pk,
        "channel_version_id": version.pk if version else None,
        "dedupe_window_s": channel.dedupe_window_s,
        "remote_addr": request.META.get("REMOTE_ADDR", ""),
    }


def _read_hl7(raw: bytes, channel: Channel, request) -> ingest.Inbound:
    return ingest.read_inbound(raw, **_common(channel, request))


def _read_fhir(raw: bytes, channel: Channel, request) -> ingest.Inbound | None:
    """None for JSON that is not FHIR; otherwise an Inbound, with its error if invalid."""
    item = ingest.Inbound(raw=raw, **_common(channel, request))
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
    _idempotency(item, request)
    return item


def _json_refusal(channel: Channel, media: str) -> Response | None:
    if media != JSON:
        return _refuse(415, f"channel {channel.pk} takes custom JSON: send it as {JSON}")
    try:
        json_source.channel_map(channel.source_config)
    except custom_json.JsonMapError as exc:  # the channel's fault, not the sender's: not stored
        log.warning("channel %s refuses custom JSON: %s", channel.pk, exc)
        return _refuse(409, f"channel {channel.pk} cannot map custom JSON: {exc}")
    return None


def _read_custom_json(raw: bytes, channel: Channel, request) -> ingest.Inbound:
    """Checked to be JSON only: the channel's map runs in the process stage, like a v2 map."""
    item = ingest.Inbound(raw=raw, **_common(channel, request))
    try:
        custom_json.read(raw)
    except custom_json.NotJson as exc:
        item.error, item.error_stage = exc, "parse"
    item.message_type = "JSON"
    _idempotency(item, request)
    return item


def _idempotency(item: ingest.Inbound, request) -> None:
    # The sender's Idempotency-Key plays MSH-10's part: a repeat within the window is a duplicate.
    item.header = Header(
        control_id=str(request.headers.get("Idempotency-Key") or "")[:200],
        sending_application=request.user.get_username()[:200],  # stable across token rotation
    )


def _store(item: ingest.Inbound, content_type: str) -> ingest.Stored:
    row = ingest._row(item, item.dedupe_key)
    params = {column: [value] for column, value in zip(ingest.COLUMNS, row, strict=True)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(ingest.STORE_BATCH, params)
        fresh, ids = cursor.fetchone()
        if not ids:
            return ingest.Stored(None, duplicate=True)
        if content_type != HL7_TYPES[0]:
            cursor.execute(
                "UPDATE channels_app_message SET content_type = %s WHERE id = %s",
                [content_type, ids[0]],
            )
    return ingest.Stored(ids[0])


def _dispatch(message_id: int) -> None:
    try:
        events.enqueue_processing([message_id])
    except Exception as exc:  # the broker is down: the sweeper picks the message up
        log.warning(
            "could not enqueue message %s for processing (%s); the sweeper will", message_id, exc
        )
