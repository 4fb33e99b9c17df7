"""API endpoints. Each class declares the role every action needs (``required_roles``); the role
middleware refuses anything undeclared. Changes are audited with a before/after diff."""

from __future__ import annotations

import json
from datetime import timedelta

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from channels_app.models import Attempt, Channel, Delivery, Destination, Message
from console import audit, tokens
from console.api import serializers as s
from console.models import ApiToken, AuditEvent
from console.phi import mask_fhir, mask_hl7, mask_text
from console.roles import Role

VIEWER, OPERATOR, ANALYST, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ANALYST, Role.ADMIN
READ = {"list": VIEWER, "retrieve": VIEWER}


# Bookkeeping that changes with every save; not something a person changed.
NOT_CHANGES = {"updated_at"}


def changes(before: dict, after: dict) -> dict:
    """``{field: [before, after]}`` for every field that changed."""
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted((before.keys() | after.keys()) - NOT_CHANGES)
        if before.get(key) != after.get(key)
    }


BIGINT_MAX = 2**63 - 1


def id_param(request, name: str) -> int | None:
    """A query parameter that names a row: a positive bigint, or None (filter not applied)."""
    value = request.query_params.get(name, "")
    return int(value) if value.isdigit() and int(value) <= BIGINT_MAX else None


def text_param(request, name: str) -> str:
    """A query parameter compared with text columns; PostgreSQL text cannot hold NUL."""
    return request.query_params.get(name, "").replace("\x00", "")


class AuditedConfigViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Config objects: everyone reads, analysts change; every change is audited with its diff.
    Deleting is not offered: messages keep pointing at their channel and destinations."""

    noun = ""

    def perform_create(self, serializer):
        with transaction.atomic():
            obj = serializer.save()
            audit.record(
                self.request,
                f"{self.noun}.created",
                target=f"{self.noun}:{obj.pk}",
                detail={"changes": changes({}, self.get_serializer(obj).data)},
            )

    def perform_update(self, serializer):
        before = self.get_serializer(serializer.instance).data
        with transaction.atomic():
            obj = serializer.save()
            diff = changes(before, self.get_serializer(obj).data)
            if diff:
                audit.record(
                    self.request,
                    f"{self.noun}.updated",
                    target=f"{self.noun}:{obj.pk}",
                    detail={"changes": diff},
                )

    def _set_paused(self, request, paused: bool):
        from channels_app.pipeline import control

        obj = self.get_object()
        (control.pause if paused else control.resume)(obj)
        audit.record(
            request,
            f"{self.noun}.{'paused' if paused else 'resumed'}",
            target=f"{self.noun}:{obj.pk}",
        )
        obj.refresh_from_db()
        return Response(self.get_serializer(obj).data)


class ChannelViewSet(AuditedConfigViewSet):
    queryset = Channel.objects.all()
    serializer_class = s.ChannelSerializer
    noun = "channel"
    required_roles = {
        **READ,
        "create": ANALYST,
        "update": ANALYST,
        "partial_update": ANALYST,
        "publish": ADMIN,
        "rollback": ADMIN,
        "versions": VIEWER,
        "pause": OPERATOR,
        "resume": OPERATOR,
    }

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Record the channel and its destinations as a new version."""
        channel = self.get_object()
        version = channel.publish(user=request.user)
        audit.record(
            request,
            "channel.published",
            target=f"channel:{channel.pk}",
            detail={"version": version.number},
        )
        return Response(self.get_serializer(channel).data)

    @extend_schema(responses=s.ChannelVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        """Every published version of the channel, newest first (snapshots hold no secrets)."""
        channel = self.get_object()
        versions = channel.versions.select_related("created_by").order_by("-number")
        return Response(s.ChannelVersionSerializer(versions, many=True).data)

    @extend_schema(request=s.RollbackSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Restore the settings of an earlier version, published as a new version."""
        form = s.RollbackSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        channel = self.get_object()
        number = form.validated_data["version"]
        if not channel.versions.filter(number=number).exists():
            raise serializers.ValidationError({"version": [f"channel has no version {number}"]})
        before = channel.snapshot()
        with transaction.atomic():
            version = channel.rollback(number, user=request.user)
            audit.record(
                request,
                "channel.rolled_back",
                target=f"channel:{channel.pk}",
                detail={
                    "to_version": number,
                    "version": version.number,
                    "changes": changes(before, channel.snapshot()),
                },
            )
        channel.refresh_from_db()
        return Response(self.get_serializer(channel).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Keep receiving and ACKing; hold every delivery as QUEUED."""
        return self._set_paused(request, True)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._set_paused(request, False)


class DestinationViewSet(AuditedConfigViewSet):
    queryset = Destination.objects.all()
    serializer_class = s.DestinationSerializer
    noun = "destination"
    required_roles = {
        **READ,
        "create": ANALYST,
        "update": ANALYST,
        "partial_update": ANALYST,
        "pause": OPERATOR,
        "resume": OPERATOR,
    }

    def get_queryset(self):
        queryset = super().get_queryset()
        channel = id_param(self.request, "channel")
        return queryset if channel is None else queryset.filter(channel_id=channel)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Hold this destination's deliveries as QUEUED until resumed."""
        return self._set_paused(request, True)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._set_paused(request, False)


MESSAGE_FILTERS = [
    OpenApiParameter("channel", int),
    OpenApiParameter("status", str, enum=Message.Status.values),
    OpenApiParameter("control_id", str),
]


@extend_schema(parameters=MESSAGE_FILTERS)
class MessageViewSet(viewsets.ReadOnlyModelViewSet):
    """Message metadata for everyone; bodies masked, revealed only by an audited POST."""

    serializer_class = s.MessageSerializer
    required_roles = {**READ, "body": VIEWER, "reveal": OPERATOR}

    def get_queryset(self):
        queryset = Message.objects.select_related("channel").defer(
            "raw", "canonical", "canonical_sealed", "issues"
        )
        channel = id_param(self.request, "channel")
        if channel is not None:
            queryset = queryset.filter(channel_id=channel)
        if self.request.query_params.get("status") in Message.Status.values:
            queryset = queryset.filter(status=self.request.query_params["status"])
        if control_id := text_param(self.request, "control_id"):
            queryset = queryset.filter(control_id=control_id)
        return queryset.order_by("-id")

    @extend_schema(responses=s.MessageBodySerializer)
    @action(detail=True, methods=["get"])
    def body(self, request, pk=None):
        """The message as received and as canonical FHIR, PHI masked."""
        return Response(_body(get_object_or_404(Message, pk=pk), reveal=False))

    @extend_schema(request=None, responses=s.MessageBodySerializer)
    @action(detail=True, methods=["post"])
    def reveal(self, request, pk=None):
        """The bodies with PHI; written to the audit log."""
        message = get_object_or_404(Message, pk=pk)
        audit.record(request, "phi.reveal", target=f"message:{message.pk}", detail={"via": "api"})
        return Response(_body(message, reveal=True))


def _body(message: Message, *, reveal: bool) -> dict:
    canonical = message.canonical_json
    raw = message.raw_text
    if not reveal:
        canonical = mask_fhir(canonical) if canonical else canonical
        raw = _mask_raw(message, raw)
    return {
        "revealed": reveal,
        "raw": raw,
        "canonical": canonical,
        "issues": [
            {**i, "reason": i.get("reason", "") if reveal else mask_text(i.get("reason", ""))}
            for i in message.issues or []
        ],
    }


def _mask_raw(message: Message, raw: str) -> str:
    if "json" in message.content_type:
        try:
            return json.dumps(mask_fhir(json.loads(raw)), ensure_ascii=False)
        except ValueError:
            return mask_text(raw)
    return mask_hl7(raw)


@extend_schema(
    parameters=[
        OpenApiParameter("message", int),
        OpenApiParameter("destination", int),
        OpenApiParameter("status", str, enum=Delivery.Status.values),
    ]
)
class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.DeliverySerializer
    required_roles = {**READ, "attempts": VIEWER}

    def get_queryset(self):
        queryset = Delivery.objects.select_related("destination")
        for field in ("message", "destination"):
            if (value := id_param(self.request, field)) is not None:
                queryset = queryset.filter(**{f"{field}_id": value})
        if self.request.query_params.get("status") in Delivery.Status.values:
            queryset = queryset.filter(status=self.request.query_params["status"])
        return queryset.order_by("-id")

    @extend_schema(responses=s.AttemptSerializer(many=True))
    @action(detail=True, methods=["get"])
    def attempts(self, request, pk=None):
        """Every attempt at this delivery; error texts masked (they may quote a value)."""
        delivery = self.get_object()
        rows = []
        for attempt in Attempt.objects.filter(delivery=delivery).order_by("number"):
            row = s.AttemptSerializer(attempt).data
            row["error"] = mask_text(attempt.error or attempt.response_summary)
            rows.append(row)
        return Response(rows)


@extend_schema(parameters=[OpenApiParameter("action", str), OpenApiParameter("actor", str)])
class AuditViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.AuditEventSerializer
    required_roles = {"list": ADMIN, "retrieve": ADMIN}

    def get_queryset(self):
        queryset = AuditEvent.objects.all()
        if action := text_param(self.request, "action"):
            queryset = queryset.filter(action=action)
        if actor := text_param(self.request, "actor"):
            queryset = queryset.filter(actor_name=actor)
        return queryset


class TokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Service-account tokens (admins only). The token itself is returned once, at issue."""

    queryset = ApiToken.objects.select_related("account")
    serializer_class = s.TokenSerializer
    required_roles = {
        "list": ADMIN,
        "retrieve": ADMIN,
        "create": ADMIN,
        "rotate": ADMIN,
        "revoke": ADMIN,
    }

    @extend_schema(request=s.TokenRequestSerializer, responses={201: s.IssuedTokenSerializer})
    def create(self, request):
        form = s.TokenRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        with transaction.atomic():
            issued = tokens.issue(
                tokens.service_account(data["account"]),
                Role.parse(data["role"]),
                lifetime=timedelta(days=data["expires_in_days"]),
                name=data["name"],
                by=request.user,
            )
            _audit_token(request, "token.issued", issued.token)
        return Response(_issued(issued), status=status.HTTP_201_CREATED)

    @extend_schema(request=s.TokenRotateSerializer, responses={201: s.IssuedTokenSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk=None):
        """A new token; the old one keeps working for ``overlap_hours``."""
        form = s.TokenRotateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        old = self.get_object()
        with transaction.atomic():
            try:
                issued = tokens.rotate(
                    old,
                    overlap=timedelta(hours=form.validated_data["overlap_hours"]),
                    by=request.user,
                )
            except ValueError as exc:
                raise serializers.ValidationError({"detail": str(exc)}) from None
            _audit_token(request, "token.rotated", issued.token, replaces=old.prefix)
        return Response(_issued(issued), status=status.HTTP_201_CREATED)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = self.get_object()
        with transaction.atomic():
            tokens.revoke(token)
            _audit_token(request, "token.revoked", token)
        return Response(self.get_serializer(token).data)


def _issued(issued: tokens.Issued) -> dict:
    return {**s.TokenSerializer(issued.token).data, "token": issued.secret}


def _audit_token(request, action: str, token: ApiToken, **detail) -> None:
    audit.record(
        request,
        action,
        target=f"token:{token.prefix}",
        detail={"account": token.account.username, "role": token.role, **detail},
    )
