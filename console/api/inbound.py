"""HTTP inbound: a sender POSTs HL7 v2, FHIR JSON or (to a channel with a JSON map) custom JSON to
an HTTP channel with its service token.

202 with the message id once the message is committed (the HTTP twin of an MLLP AA); a message
that cannot be read is still stored, with its error, and answered 4xx with the reason, so nothing
a sender sent is lost and the console shows what went wrong. The reading and storing is the HTTP
source's (`channels_app/sources/http.py`); this view parses the request and answers.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import parsers, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.models import Channel
from channels_app.sources import http
from console.roles import Role

HL7_TYPES, FHIR_TYPES, FHIR_JSON = http.HL7_TYPES, http.FHIR_TYPES, http.FHIR_JSON


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
        raw = request.data if isinstance(request.data, bytes) else b""
        sender = http.Sender(
            remote_addr=request.META.get("REMOTE_ADDR", ""),
            account=request.user.get_username(),
            idempotency_key=str(request.headers.get("Idempotency-Key") or ""),
        )
        media = request.content_type.split(";")[0].strip().lower()
        try:
            http.check_request(channel, raw)
            if http.takes_json(channel):  # the channel decides, not the body
                http.check_json_channel(channel, media)
                item = http.read_custom_json(raw, channel, sender)
            elif media in HL7_TYPES:
                item = http.read_hl7(raw, channel, sender)
            elif media in FHIR_TYPES:
                item = http.read_fhir(raw, channel, sender)
                if item is None:
                    return _refuse(
                        415,
                        "JSON without a resourceType is not FHIR; custom JSON needs a channel"
                        ' configured for it ("inbound": "json" with a json_map), which this is not',
                    )
            else:
                return _refuse(415, f"send HL7 v2 ({HL7_TYPES[0]}) or FHIR JSON ({FHIR_JSON})")
        except http.Oversize as refused:
            stored = http.store_oversize(raw, channel, sender, media, refused.detail)
            return _refuse(refused.status, refused.detail, message_id=stored.message_id)
        except http.Refused as refused:
            return _refuse(refused.status, refused.detail)
        stored = http.store(item)
        if stored.duplicate:
            return Response({"message_id": None, "status": "DUPLICATE", "duplicate": True})
        if item.error:
            status, detail = http.error_answer(item)
            return _refuse(status, detail, message_id=stored.message_id)
        response = Response(
            {"message_id": stored.message_id, "status": "RECEIVED", "duplicate": False},
            status=202,
        )
        response["Location"] = f"/api/v1/messages/{stored.message_id}/"
        return response


def _refuse(status: int, detail: str, **extra) -> Response:
    return Response({"detail": detail, **extra}, status=status)
