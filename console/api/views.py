"""API endpoints. Each class declares the role every action needs (``required_roles``); the role
middleware refuses anything undeclared. Changes are audited with a before/after diff."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response

from channels_app import drafts, field_rules, outcome
from channels_app import samples as suite
from channels_app.channels import DeleteRefused
from channels_app.drafts import DraftError
from channels_app.dry_run import dry_run
from channels_app.models import (
    Alert,
    AlertRule,
    Attempt,
    Channel,
    ChannelDraft,
    ChannelSample,
    Delivery,
    Destination,
    Message,
    ReplayItem,
    ReplayJob,
)
from channels_app.pipeline import replay as replay_stage
from console import (
    alerting,
    audit,
    bench,
    channel_actions,
    config_code,
    message_filters,
    replays,
    timeline,
    tokens,
)
from console.api import serializers as s
from console.api.pagination import MessagePages
from console.api.renderers import ExactJSONRenderer
from console.message_filters import MessageFilter, listed_messages
from console.message_phi import key_values, phi_by_message, phi_of_message_id
from console.models import ApiToken, AuditEvent
from console.phi import mask_body, mask_fhir, mask_free_text, message_phi
from console.roles import RESEND_EDITED, Role

VIEWER, OPERATOR, ANALYST, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ANALYST, Role.ADMIN
READ = {"list": VIEWER, "retrieve": VIEWER}


BIGINT_MAX = 2**63 - 1


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def id_param(request, name: str) -> int | None:
    """A query parameter that names a row: a positive bigint, or None (filter not applied)."""
    value = request.query_params.get(name, "")
    return int(value) if value.isdigit() and int(value) <= BIGINT_MAX else None


def text_param(request, name: str) -> str:
    """A query parameter compared with text columns; PostgreSQL text cannot hold NUL."""
    return request.query_params.get(name, "").replace("\x00", "")


DRAFT_PARAMETERS = [s.DraftWriteSerializer]
DRAFTED = (
    " It goes to the channel's draft (what runs changes when the draft is published; "
    "``draft`` in the answer says what the draft now changes and where it is), or is "
    "published at once as a new version with ``?publish=true&note=...`` (``version``). A "
    "draft that cannot be saved or published is refused (400) naming each key, and nothing "
    "is changed."
)


def publish_asked(request) -> dict:
    """``publish`` and ``note`` from the query string of a configuration write."""
    asked = s.DraftWriteSerializer(data=request.query_params)
    asked.is_valid(raise_exception=True)
    return asked.validated_data


def to_draft(request, channel: Channel, document: dict, where: str = ""):
    """Save ``document`` as the channel's draft, published at once when the query string asks
    (``?publish=true&note=``); (draft, version or None). A refused draft is a 400 naming each
    key, the ``where`` prefix (one destination's place in the draft) taken off its paths."""
    asked = publish_asked(request)
    try:
        return channel_actions.change_draft(request, channel, document, **asked)
    except DraftError as exc:
        errors = {path.removeprefix(where): [why] for path, why in exc.errors.items()}
        raise serializers.ValidationError(errors) from None


def draft_state(channel: Channel, version) -> dict:
    """What a write answers beside the object: the draft that holds it, or the version that
    published it (see DraftedSerializer)."""
    if version is not None or not drafts.has_draft(channel):
        return {"draft": None, "version": getattr(version, "number", None)}
    url = f"/api/v1/channels/{channel.pk}/draft/"
    return {"draft": {"url": url, "changes": drafts.draft_diff(channel)}, "version": None}


def drafted_answer(channel: Channel, shown: dict, version, *, created: bool = False) -> Response:
    """``shown`` with the draft's state; a drafted change names the draft in ``Location``."""
    state = draft_state(channel, version)
    headers = {"Location": state["draft"]["url"]} if state["draft"] else {}
    code = status.HTTP_200_OK
    if created:
        code = status.HTTP_201_CREATED if version else status.HTTP_202_ACCEPTED
    return Response({**shown, **state}, status=code, headers=headers)


class AuditedConfigViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Config objects: everyone reads what runs, analysts change it through the channel's draft
    (channels_app.drafts), audited with its diff as the pages' changes are. Deleting is not
    offered: messages keep pointing at their channel and destinations."""

    noun = ""

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


# Canonical FHIR in an answer keeps its decimals as written (1.50 stays 1.50).
BODY_RENDERERS = [ExactJSONRenderer, BrowsableAPIRenderer]


CHANNEL_WRITE = extend_schema(
    parameters=DRAFT_PARAMETERS,
    responses=s.DraftedChannelSerializer,
    description="Change the channel's settings, answered as the draft now has them."
    + DRAFTED
    + " ``enabled`` is not configuration: it starts or stops the channel at once.",
)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("tag", str, description="Channels with this tag."),
            OpenApiParameter("archived", bool, description="true: the archived channels only."),
        ]
    ),
    create=extend_schema(
        description="Create a channel: live at once, as the console's New channel creates it "
        "(nothing runs yet to keep a draft from); publish it to record its first version."
    ),
    retrieve=extend_schema(description="The channel as it runs (its draft, if any, at draft/)."),
    update=CHANNEL_WRITE,
    partial_update=CHANNEL_WRITE,
)
class ChannelViewSet(mixins.DestroyModelMixin, AuditedConfigViewSet):
    """Channels: created, changed (in the draft), cloned, archived and deleted through
    console.channel_actions, the functions the Channels pages call, which audit each change
    with its diff."""

    queryset = Channel.objects.all()
    serializer_class = s.ChannelSerializer
    noun = "channel"
    required_roles = {
        **READ,
        "create": ANALYST,
        "update": ANALYST,
        "partial_update": ANALYST,
        "clone": ANALYST,
        "archive": ANALYST,
        "restore": ANALYST,
        "destroy": ANALYST,
        "publish": ADMIN,
        "rollback": ADMIN,
        "versions": VIEWER,
        "pause": OPERATOR,
        "resume": OPERATOR,
        "test": ANALYST,
        "suite": ANALYST,
        "mapping": VIEWER,
        "set_mapping": ANALYST,
        "export": ANALYST,
        "import_channels": ADMIN,
        "draft": ANALYST,
        "draft_save": ANALYST,
        "draft_discard": ANALYST,
        "draft_publish": ANALYST,
        "draft_preview": ANALYST,
        "version_diff": VIEWER,
    }

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        archived = self.request.query_params.get("archived") in ("true", "1")
        queryset = queryset.filter(archived_at__isnull=not archived)
        if tag := text_param(self.request, "tag"):
            queryset = queryset.filter(tags__contains=[tag])
        return queryset

    def perform_create(self, serializer):
        serializer.instance = channel_actions.create(self.request, serializer.validated_data)

    def update(self, request, *args, partial: bool = False, **kwargs):
        """PUT and PATCH: checked as the draft has the channel, then saved to its draft
        (``enabled``, an action of its own, at once)."""
        channel = self.get_object()
        form = self.get_serializer(
            drafts.draft_channel(channel), data=request.data, partial=partial
        )
        form.is_valid(raise_exception=True)
        values = {k: v for k, v in form.validated_data.items() if k in request.data}
        if "source_type" in values:  # its settings were checked for the type it becomes
            values["source_config"] = form.validated_data["source_config"]
        enabled = values.pop("enabled", None)
        version = None
        with transaction.atomic():
            if enabled is not None:
                channel_actions.set_enabled(request, channel, enabled)
            if values or publish_asked(request)["publish"]:
                _, version = to_draft(request, channel, {**drafts.draft_of(channel), **values})
        channel.refresh_from_db()
        shown = channel if version else drafts.draft_channel(channel)
        return drafted_answer(channel, s.ChannelSerializer(shown).data, version)

    def perform_destroy(self, instance):
        try:
            channel_actions.delete(self.request, instance)
        except DeleteRefused as exc:
            raise Conflict(str(exc)) from None

    @extend_schema(request=s.CloneSerializer, responses={201: s.ChannelSerializer})
    @action(detail=True, methods=["post"])
    def clone(self, request, pk=None):
        """A disabled copy with its destinations and rules; give it a name (and an MLLP clone
        its own port in ``source_config``)."""
        channel = self.get_object()
        form = s.CloneSerializer(data=request.data, context={"channel": channel})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        copy = channel_actions.clone(request, channel, data["name"], data["source_config"])
        return Response(
            self.get_serializer(copy).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/channels/{copy.pk}/"},
        )

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        """Hide the channel and stop its source; its messages, versions and audit stay."""
        channel = self.get_object()
        channel_actions.archive(request, channel)
        return Response(self.get_serializer(channel).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def restore(self, request, pk=None):
        """List an archived channel again (still disabled)."""
        channel = self.get_object()
        channel_actions.restore(request, channel)
        return Response(self.get_serializer(channel).data)

    @extend_schema(request=s.DryRunRequestSerializer, responses=OpenApiResponse())
    @action(detail=True, methods=["post"], renderer_classes=BODY_RENDERERS)
    def test(self, request, pk=None):
        """Dry run: the parse tree, Bundle, issues, routing and each routed destination's encoded
        output for a message (or a saved sample); nothing is stored, nothing is sent."""
        channel = self.get_object()
        form = s.DryRunRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        if "sample" in form.validated_data:
            sample = get_object_or_404(channel.samples, pk=form.validated_data["sample"])
            result = suite.run_sample(sample)
        else:
            data = form.validated_data
            result = dry_run(channel, data["raw"], data["content_type"])
        return Response(result.as_dict())

    @extend_schema(responses=s.MappingSerializer)
    @action(detail=True, methods=["get"])
    def mapping(self, request, pk=None):
        """The channel's analyst field rules for HL7 v2 and their lookup tables, as they run
        (the draft's are in draft/ under ``snapshot.mapping``)."""
        channel = self.get_object()
        return Response(field_rules.stored(channel.mapping))

    @extend_schema(
        request=s.MappingSerializer,
        parameters=DRAFT_PARAMETERS,
        responses=s.DraftedMappingSerializer,
        description="Replace the field rules and tables, answered as the draft now has them; "
        "refused (400) naming the rule and part when a rule does not compile." + DRAFTED,
    )
    @mapping.mapping.put
    def set_mapping(self, request, pk=None):
        channel = self.get_object()
        try:
            checked = field_rules.checked_mapping(request.data)
        except field_rules.MappingRefused as exc:
            body = {"mapping": [str(exc)], "rule": exc.index, "part": exc.part}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        _, version = to_draft(request, channel, {**drafts.draft_of(channel), "mapping": checked})
        return drafted_answer(channel, checked, version)

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "against",
                str,
                enum=["live", "draft"],
                description="Run as the channel runs now (default) or as its draft would.",
            )
        ],
        responses=s.SuiteRunSerializer,
    )
    @action(detail=True, methods=["post"])
    def suite(self, request, pk=None):
        """Run every sample of the channel against its accepted output: as the channel runs now,
        or (``?against=draft``) as its unpublished draft would, before it is published."""
        channel = self.get_object()
        against = request.query_params.get("against", "live")
        if against not in ("live", "draft"):
            raise serializers.ValidationError({"against": ["live or draft"]})
        if against == "draft" and not drafts.has_draft(channel):
            raise serializers.ValidationError({"against": ["the channel has no draft"]})
        outcomes = suite.run_suite(channel, drafts.drafted(channel) if against == "draft" else None)
        return Response(
            {
                "against": against,
                "counts": suite.tally(outcomes),
                "samples": [o.as_dict() for o in outcomes],
            }
        )

    @extend_schema(
        parameters=[OpenApiParameter("channel", int, description="This channel only.")],
        responses={(200, "application/yaml"): OpenApiTypes.STR},
    )
    @action(detail=False, methods=["get"])
    def export(self, request):
        """The channels (not archived), or ``?channel=ID`` alone, as the YAML file of config as
        code: secrets as ••••, samples and accepted outputs included. Audited."""
        if "channel" in request.query_params:
            channel = id_param(request, "channel")
            if channel is None:
                raise serializers.ValidationError({"channel": ["a channel id"]})
            channels = [get_object_or_404(Channel, pk=channel)]
        else:
            channels = config_code.listed_channels()
        text = config_code.exported(request, channels, via="api")
        return HttpResponse(text, content_type="application/yaml; charset=utf-8")

    @extend_schema(request=s.ImportRequestSerializer, responses=s.ImportResultSerializer)
    @action(detail=False, methods=["post"], url_path="import", url_name="import")
    def import_channels(self, request):
        """Import a YAML file (``document``): checked whole first; refused with every problem
        (its channel and key path) and nothing applied, or the changes per channel, applied in
        one transaction unless ``dry_run``; ``publish`` records each changed channel as a new
        version (without it, the file becomes each existing channel's draft)."""
        form = s.ImportRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            if data["dry_run"]:
                plans = config_code.preview(data["document"])
                found = [{**p.as_dict(), "id": getattr(p.channel, "pk", None)} for p in plans]
            else:
                applied = config_code.imported(
                    request, data["document"], publish=data["publish"], via="api"
                )
                found = [_applied(a) for a in applied]
        except config_code.Refused as exc:
            problems = [p.as_dict() for p in exc.problems]
            detail = "the file is refused; nothing was applied"
            return Response({"detail": detail, "problems": problems}, status=400)
        return Response({"dry_run": data["dry_run"], "publish": data["publish"], "channels": found})

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Record the channel and its destinations as they run now as a new version (a new
        channel has none until then); a draft is put live by draft/publish/."""
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
        channel_actions.rollback(request, channel, number)
        channel.refresh_from_db()
        return Response(self.get_serializer(channel).data)

    @extend_schema(responses=s.DraftSerializer)
    @action(detail=True, methods=["get"])
    def draft(self, request, pk=None):
        """The channel's draft (the live configuration when it has none) and what it changes."""
        channel = self.get_object()
        record = ChannelDraft.objects.filter(channel=channel).first()
        return Response(s.DraftSerializer.of(channel, record))

    @extend_schema(request=s.DraftSerializer, responses=s.DraftSerializer)
    @draft.mapping.put
    def draft_save(self, request, pk=None):
        """Replace the draft (``snapshot`` as GET gives it, secrets as the marker to keep them);
        nothing runs differently until it is published."""
        channel = self.get_object()
        form = s.DraftSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            record = channel_actions.save_draft(
                request, channel, form.validated_data["snapshot"], form.validated_data["note"]
            )
        except DraftError as exc:
            raise serializers.ValidationError({"snapshot": exc.errors}) from None
        return Response(s.DraftSerializer.of(channel, record))

    @extend_schema(request=None, responses={204: None})
    @draft.mapping.delete
    def draft_discard(self, request, pk=None):
        """Drop the draft; the live configuration stays as it is."""
        if not channel_actions.discard_draft(request, self.get_object()):
            raise exceptions.NotFound("the channel has no draft")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.PublishSerializer, responses=s.ChannelVersionSerializer)
    @action(detail=True, methods=["post"], url_path="draft/publish", url_name="draft-publish")
    def draft_publish(self, request, pk=None):
        """Put the draft live as a new version with ``note``."""
        channel = self.get_object()
        form = s.PublishSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        if not drafts.has_draft(channel):
            raise Conflict("the channel has no draft to publish")
        try:
            version = channel_actions.publish_draft(request, channel, form.validated_data["note"])
        except DraftError as exc:
            raise serializers.ValidationError({"snapshot": exc.errors}) from None
        return Response(s.ChannelVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.SamplePreviewSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="draft/preview", url_name="draft-preview")
    def draft_preview(self, request, pk=None):
        """Each sample run as the channel runs now and as the draft would: unchanged, changed
        (with a diff, live against draft) or failed. Nothing is stored or sent."""
        return Response([p.as_dict() for p in drafts.preview(self.get_object())])

    @extend_schema(
        parameters=[
            OpenApiParameter("a", int, required=True, description="A version number."),
            OpenApiParameter("b", int, required=True, description="Another version number."),
        ],
        responses=s.ChangeSerializer(many=True),
    )
    @action(detail=True, methods=["get"], url_path="versions/diff", url_name="version-diff")
    def version_diff(self, request, pk=None):
        """What changed from version ``a`` to version ``b``: each setting by its path."""
        channel = self.get_object()
        found = {}
        for name in ("a", "b"):
            number = id_param(request, name)
            version = channel.versions.filter(number=number).first() if number else None
            if version is None:
                raise serializers.ValidationError({name: ["not a version of this channel"]})
            found[name] = version.snapshot
        return Response(drafts.diff(found["a"], found["b"]))

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Keep receiving and ACKing; hold every delivery as QUEUED."""
        return self._set_paused(request, True)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._set_paused(request, False)


def _applied(result) -> dict:
    version = result.version.number if result.version else None
    return {**result.plan.as_dict(), "id": result.channel.pk, "version": version}


DESTINATION_WRITE = extend_schema(
    parameters=DRAFT_PARAMETERS,
    responses=s.DraftedDestinationSerializer,
    description="Change the destination, answered as the channel's draft now has it." + DRAFTED,
)


@extend_schema_view(
    create=extend_schema(
        parameters=DRAFT_PARAMETERS,
        responses={
            201: OpenApiResponse(s.DraftedDestinationSerializer, description="Published."),
            202: OpenApiResponse(
                s.DraftedDestinationSerializer,
                description="In the draft (``id`` null until it is published).",
            ),
        },
        description="Add a destination to a channel (``channel``): answered 202 as the "
        "channel's draft now has it." + DRAFTED + " Published, it is answered 201.",
    ),
    retrieve=extend_schema(description="The destination as it runs."),
    update=DESTINATION_WRITE,
    partial_update=DESTINATION_WRITE,
)
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

    def create(self, request, *args, **kwargs):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        values = dict(form.validated_data)
        destination = Destination(channel=values.pop("channel"), transport=values["transport"])
        return self._drafted(request, destination, values, created=True)

    def update(self, request, *args, partial: bool = False, **kwargs):
        """PUT and PATCH: checked as the channel's draft has the destination."""
        destination = self.get_object()
        channel = destination.channel
        _, entry = drafts.destination_entry(channel, drafts.draft_of(channel), destination)
        shown = drafts.drafted_destination(destination, entry)
        form = self.get_serializer(shown, data=request.data, partial=partial)
        form.is_valid(raise_exception=True)
        values = dict(form.validated_data)
        if values.pop("channel", channel) != channel:
            raise serializers.ValidationError({"channel": ["a destination stays on its channel"]})
        return self._drafted(request, destination, values)

    def _drafted(self, request, destination: Destination, values: dict, created: bool = False):
        """Put ``values`` into the draft's entry for ``destination`` and answer with it."""
        channel = destination.channel
        document = drafts.draft_of(channel)
        index, entry = drafts.destination_entry(channel, document, destination)
        place = len(document["destinations"]) if index is None else index
        document = drafts.with_destination(document, index, {**entry, **values})
        _, version = to_draft(request, channel, document, where=f"destinations.{place}.")
        if version is None:
            saved = drafts.draft_of(channel)["destinations"][place]
            shown = drafts.drafted_destination(destination, saved)
            return drafted_answer(channel, self.get_serializer(shown).data, None, created=created)
        name = document["destinations"][place]["name"]
        live = channel.destinations.get(name=name)
        answer = drafted_answer(channel, self.get_serializer(live).data, version, created=created)
        if created:
            answer["Location"] = f"/api/v1/destinations/{live.pk}/"
        return answer

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


# A bulk replay's audit entry lists the ids given up to this many.
AUDITED_IDS = 100


def message_filterset(request, queryset) -> MessageFilter:
    """The list's filters from the query string (the bulk replay takes the same); a value the
    filter does not know is a 400 naming it."""
    filterset = MessageFilter(request.query_params, queryset=queryset)
    if not filterset.is_valid():
        raise serializers.ValidationError(message_filters.errors(filterset))
    return filterset


class MessageViewSet(viewsets.ReadOnlyModelViewSet):
    """Message metadata for everyone; bodies masked, revealed only by an audited POST."""

    serializer_class = s.MessageSerializer
    required_roles = {
        **READ,
        "body": VIEWER,
        "reveal": OPERATOR,
        "replay": OPERATOR,
        "replay_bulk": OPERATOR,
        "resend": RESEND_EDITED,
        "timeline": VIEWER,
    }

    filter_backends = [DjangoFilterBackend]
    filterset_class = MessageFilter
    pagination_class = MessagePages

    def get_queryset(self):
        return listed_messages().order_by("-id")

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        return message_filterset(self.request, queryset).qs

    def page_rows(self, ids: list[int]):
        """A page's messages, chosen already (see MessagePages): read by primary key."""
        return self.get_queryset().filter(pk__in=ids)

    @extend_schema(responses=s.TimelineEntrySerializer(many=True))
    @action(detail=True, methods=["get"])
    def timeline(self, request, pk=None):
        """Everything that happened to the message, oldest first: received, processed, routed,
        each attempt, each replay and edit-and-resend (linked both ways). PHI masked."""
        message = get_object_or_404(Message.objects.defer("raw", "canonical_sealed"), pk=pk)
        return Response(timeline.of(message))

    def get_serializer(self, *args, **kwargs):
        """Listed or retrieved messages carry the PHI values their error details are masked
        against, read once for the whole page."""
        if args and self.action in ("list", "retrieve"):
            shown = args[0] if kwargs.get("many") else [args[0]]
            context = kwargs.setdefault("context", self.get_serializer_context())
            context["phi"] = phi_by_message(m.pk for m in shown if m.error_detail)
            context["destinations"] = outcome.destination_states(m.pk for m in shown)
        return super().get_serializer(*args, **kwargs)

    @extend_schema(responses=s.MessageBodySerializer)
    @action(detail=True, methods=["get"], renderer_classes=BODY_RENDERERS)
    def body(self, request, pk=None):
        """The message as received and as canonical FHIR, PHI masked."""
        return Response(_body(get_object_or_404(Message, pk=pk), reveal=False))

    @extend_schema(request=None, responses=s.MessageBodySerializer)
    @action(detail=True, methods=["post"], renderer_classes=BODY_RENDERERS)
    def reveal(self, request, pk=None):
        """The bodies with PHI; written to the audit log."""
        message = get_object_or_404(Message, pk=pk)
        audit.record(request, "phi.reveal", target=f"message:{message.pk}", detail={"via": "api"})
        return Response(_body(message, reveal=True))

    @extend_schema(request=s.ReplaySerializer, responses=s.ReplayResultSerializer)
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        """Replay this message if something failed: what was replayed, or why it was skipped."""
        form = s.ReplaySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = get_object_or_404(Message.objects.only("id"), pk=pk)
        mode = form.validated_data["mode"]
        return Response(replays.replay_message(request, message.pk, mode, via="api"))

    @extend_schema(
        operation_id="api_v1_messages_replay_bulk",
        request=s.BulkReplaySerializer,
        responses={
            200: OpenApiResponse(
                s.ReplayJobSerializer,
                description="Done already (small), or with dry_run: a ReplayPreview (counts).",
            ),
            202: OpenApiResponse(
                s.ReplayJobSerializer, description="Running: poll /api/v1/replay-jobs/{id}/."
            ),
        },
    )
    @action(detail=False, methods=["post"], url_path="replay", url_name="replay-bulk")
    def replay_bulk(self, request):
        """Replay many messages: the ``ids`` given, or every failed message the list's filters
        (query string) match. ``dry_run``: only count what it would do. ``destinations`` limits
        a redeliver; ``rate`` paces the job (messages/s). Small unrated selections are replayed
        at once (200); others run as a job you poll, pause, resume or cancel (202)."""
        form = s.BulkReplaySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        mode, destinations = data["mode"], data["destinations"]
        filterset = message_filterset(request, Message.objects.all())
        filters = message_filters.given(filterset)
        if "ids" in data and filters:
            raise serializers.ValidationError(
                {"ids": f"give ids or filters, not both (filters: {', '.join(sorted(filters))})"}
            )
        if data["dry_run"]:
            return Response(_preview(data, filterset.qs))
        if "ids" in data:
            ids, selection = data["ids"], {"ids": len(data["ids"])}
            if len(ids) <= AUDITED_IDS:  # more are kept on the job the audit entry names
                selection["message_ids"] = sorted(set(ids))
        else:
            ids = replay_stage.selected_ids(filterset.qs, mode, destinations)
            selection = {"filter": filters}
        try:
            job = replays.replay_selection(
                request,
                ids,
                mode,
                selection,
                destinations=destinations,
                rate=data.get("rate"),
                via="api",
            )
        except replay_stage.SelectionTooLarge as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from None
        running = job.state == ReplayJob.State.RUNNING
        return Response(
            s.ReplayJobSerializer(job).data,
            status=status.HTTP_202_ACCEPTED if running else status.HTTP_200_OK,
            headers={"Location": f"/api/v1/replay-jobs/{job.pk}/"},
        )

    @extend_schema(request=s.ResendSerializer, responses={201: s.ResentSerializer})
    @action(detail=True, methods=["post"])
    def resend(self, request, pk=None):
        """Store an edited copy as a new message on the same channel (linked to this one, which
        stays as it is) and send it through the pipeline. Needs the edit-and-resend permission."""
        form = s.ResendSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        message = get_object_or_404(Message.objects.only("id"), pk=pk)
        try:
            copy = replays.resend(request, message.pk, form.validated_data["raw"], via="api")
        except replay_stage.ResendRefused as exc:
            raise serializers.ValidationError({"raw": [str(exc)]}) from None
        return Response(
            {"original": message.pk, "message": copy.pk, "status": copy.status},
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/messages/{copy.pk}/"},
        )


class SampleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """A channel's test samples (?channel= to list one channel's); analysts and above."""

    serializer_class = s.SampleSerializer
    required_roles = {
        "list": ANALYST,
        "retrieve": ANALYST,
        "create": ANALYST,
        "partial_update": ANALYST,
        "destroy": ANALYST,
        "accept": ANALYST,
    }

    def get_queryset(self):
        found = ChannelSample.objects.select_related("created_by").order_by("channel_id", "name")
        channel = id_param(self.request, "channel")
        return found.filter(channel_id=channel) if channel is not None else found

    def create(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        channel = get_object_or_404(Channel, pk=data["channel_id"])
        try:
            if "message" in data:
                sample = bench.copy_message(request, channel, data["message"], data["name"])
            else:
                sample = bench.save_sample(
                    request, channel, data["name"], data["raw"], data["content_type"]
                )
        except Message.DoesNotExist:
            raise serializers.ValidationError({"message": ["no such message"]})
        except bench.SampleRefused as exc:
            raise serializers.ValidationError({exc.field: [exc.reason]})
        return Response(self.get_serializer(sample).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        """Rename the sample or replace its message (its accepted output stays)."""
        sample = self.get_object()
        form = s.SampleChangeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            bench.change_sample(request, sample, form.validated_data)
        except bench.SampleRefused as exc:
            raise serializers.ValidationError({exc.field: [exc.reason]})
        return Response(self.get_serializer(sample).data)

    def perform_destroy(self, instance):
        bench.delete_sample(self.request, instance)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        """Keep the sample's current dry-run result as its accepted output."""
        sample = self.get_object()
        bench.accept(request, sample)
        return Response(self.get_serializer(sample).data)


def _preview(data: dict, matching) -> dict:
    """A dry run over the ids given, or over what the filters match."""
    if "ids" in data:
        asked = set(data["ids"])
        matching, asked_count = Message.objects.filter(id__in=asked), len(asked)
    else:
        asked_count = None
    preview = replay_stage.preview(matching, data["mode"], data["destinations"], asked=asked_count)
    return s.ReplayPreviewSerializer({"dry_run": True, **preview}).data


class AlertFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Alert.State.choices)
    rule = django_filters.ModelChoiceFilter(queryset=AlertRule.objects.only("id"))
    channel = django_filters.ModelChoiceFilter(
        queryset=Channel.objects.only("id"), field_name="rule__channel", method="by_channel"
    )
    opened_after = django_filters.DateTimeFilter(field_name="opened_at", lookup_expr="gte")
    opened_before = django_filters.DateTimeFilter(field_name="opened_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields: list[str] = []

    def by_channel(self, alerts, name, value):
        """A rule on the channel, or on one of its destinations."""
        return alerts.filter(Q(rule__channel=value) | Q(rule__destination__channel=value))


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts, newest first, with how each notice fared; operators acknowledge and resolve them
    (audited, as on the Alerts page). A filter value the hub does not know is a 400."""

    serializer_class = s.AlertSerializer
    required_roles = {**READ, "ack": OPERATOR, "resolve": OPERATOR}
    filter_backends = [DjangoFilterBackend]
    filterset_class = AlertFilter

    def get_queryset(self):
        alerts = Alert.objects.select_related("rule", "acknowledged_by")
        return alerts.prefetch_related("notices").order_by("-opened_at", "-id")

    @extend_schema(request=None, responses={200: s.AlertSerializer, 409: OpenApiResponse()})
    @action(detail=True, methods=["post"])
    def ack(self, request, pk=None):
        """Open → acknowledged (someone is on it). 409 when it is not open."""
        alert = self.get_object()
        if not alerting.acknowledge(request, alert):
            raise Conflict(f"alert {alert.pk} is {alert.state}, not open")
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(request=None, responses={200: s.AlertSerializer, 409: OpenApiResponse()})
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """Resolved by hand, with its notice; 409 when it was resolved already. A rule still
        firing opens a new alert at the next evaluation."""
        alert = self.get_object()
        if not alerting.resolve(request, alert):
            raise Conflict(f"alert {alert.pk} was resolved already")
        return Response(self.get_serializer(self.get_object()).data)


class AlertRuleViewSet(viewsets.ModelViewSet):
    """Alert rules: everyone reads them (as on the Alerts page), analysts change them; every
    change is audited with its diff, the webhook secret only as a mark."""

    queryset = AlertRule.objects.all()
    serializer_class = s.AlertRuleSerializer
    required_roles = {
        **READ,
        "create": ANALYST,
        "update": ANALYST,
        "partial_update": ANALYST,
        "destroy": ANALYST,
    }

    def perform_create(self, serializer):
        with transaction.atomic():
            rule = AlertRule(**serializer.validated_data)
            serializer.instance = alerting.save_rule(self.request, rule, None)

    def perform_update(self, serializer):
        rule = serializer.instance
        before = alerting.public_rule(rule)
        with transaction.atomic():
            for field, value in serializer.validated_data.items():
                setattr(rule, field, value)
            alerting.save_rule(self.request, rule, before)

    def perform_destroy(self, instance):
        with transaction.atomic():
            alerting.delete_rule(self.request, instance)


class ReplayJobViewSet(viewsets.ReadOnlyModelViewSet):
    """Bulk replays: progress (done of total), steering (pause, resume, cancel) and, per job,
    what became of each message it took (delivered, failed again, errored again, ...)."""

    queryset = ReplayJob.objects.select_related("created_by").defer("message_ids")
    required_roles = {
        "list": OPERATOR,
        "retrieve": OPERATOR,
        "items": OPERATOR,
        "pause": OPERATOR,
        "resume": OPERATOR,
        "cancel": OPERATOR,
    }

    def get_serializer_class(self):
        if self.action == "list":
            return s.ReplayJobSerializer
        if self.action == "items":
            return s.ReplayItemSerializer
        return s.ReplayJobDetailSerializer

    @extend_schema(
        parameters=[OpenApiParameter("outcome", str, enum=ReplayItem.Outcome.values)],
        responses=s.ReplayItemSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def items(self, request, pk=None):
        """The messages the job took, each with its outcome (``?outcome=`` for one), by id."""
        job = self.get_object()
        replay_stage.settle(job)
        items = job.items.order_by("message_id")
        wanted = request.query_params.get("outcome")
        if wanted:
            if wanted not in ReplayItem.Outcome.values:
                known = ", ".join(ReplayItem.Outcome.values)
                raise serializers.ValidationError({"outcome": f"{wanted!r}: one of {known}"})
            items = items.filter(outcome=wanted)
        page = self.paginate_queryset(items)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def _steer(self, request, pk, action_name: str):
        if not str(pk).isdigit():
            raise exceptions.NotFound()
        try:
            job = replays.steer(request, int(pk), action_name, via="api")
        except ReplayJob.DoesNotExist:
            raise exceptions.NotFound() from None
        except replay_stage.NotNow as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(s.ReplayJobDetailSerializer(job).data)

    @extend_schema(request=None, responses=s.ReplayJobDetailSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Stop a running job after its current batch (409 if it is not running)."""
        return self._steer(request, pk, "pause")

    @extend_schema(request=None, responses=s.ReplayJobDetailSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Carry a paused job on from where it stopped (409 if it is not paused)."""
        return self._steer(request, pk, "resume")

    @extend_schema(request=None, responses=s.ReplayJobDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop a running or paused job for good (409 once it is over)."""
        return self._steer(request, pk, "cancel")


def _body(message: Message, *, reveal: bool) -> dict:
    canonical = message.canonical_json
    raw = message.raw_text
    issues = message.issues or []
    if not reveal:
        pruned = bool(message.pruned_at)
        known = key_values(message.pk)
        phi = message_phi(raw, canonical, message.content_type, pruned=pruned, known=known)
        issues = mask_free_text(issues, phi)
        canonical = mask_fhir(canonical) if canonical else canonical
        raw = mask_body(raw, message.content_type)
    return {"revealed": reveal, "raw": raw, "canonical": canonical, "issues": issues}


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
        """Every attempt at this delivery; what the destination said is masked against the
        message's PHI values and PHI-looking patterns (it may repeat the patient's data)."""
        delivery = self.get_object()
        phi = phi_of_message_id(delivery.message_id)
        rows = []
        for attempt in Attempt.objects.filter(delivery=delivery).order_by("number"):
            row = s.AttemptSerializer(attempt).data
            row["request_summary"] = mask_free_text(attempt.request_summary, phi)
            row["error"] = mask_free_text(attempt.error or attempt.response_summary, phi)
            row["issues"] = mask_free_text(attempt.issues or [], phi)
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
