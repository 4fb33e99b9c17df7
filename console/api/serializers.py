"""What the API shows and accepts. PHI and secrets never leave through here unmasked by accident:
message bodies are masked unless the view was asked to reveal (and audited it), and destination
secrets are write-only."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from adapters.registry import ConfigError
from channels_app import alerts, drafts, field_rules, sealing, sources
from channels_app.channels import checked_enabled, checked_new_name, checked_tags
from channels_app.destinations import POLICY_LIMITS, checked_config, checked_ordering_key
from channels_app.dry_run import CONTENT_TYPES
from channels_app.models import (
    Alert,
    AlertNotice,
    AlertRule,
    Attempt,
    Channel,
    Delivery,
    Destination,
    Message,
    ReplayItem,
    ReplayJob,
)
from channels_app.outcome import Outcome, destination_states
from channels_app.outcome import of as outcome_of
from channels_app.pipeline import replay
from channels_app.routing import RuleError, checked_rule
from console import alerting
from console.config_code import MAX_IMPORT_BYTES
from console.models import ApiToken, AuditEvent
from console.roles import Role


class ChannelSerializer(serializers.ModelSerializer):
    """A channel's settings (Channel.EDITABLE) and state. Writes go through
    console.channel_actions; ``source_config`` is checked by the console form's function, and
    its secrets are write-only (they read back as the marker; sending it back keeps them)."""

    current_version = serializers.SerializerMethodField()
    archived = serializers.BooleanField(read_only=True)
    tags = serializers.JSONField(required=False, help_text='Labels to group by, e.g. ["lab"].')

    class Meta:
        model = Channel
        fields = [
            "id",
            *Channel.EDITABLE,
            "enabled",
            "paused",
            "archived",
            "archived_at",
            "current_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["paused", "archived_at", "created_at", "updated_at"]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_current_version(self, channel) -> int | None:
        version = channel.current_version()
        return version.number if version else None

    def validate_route_filter(self, value: str) -> str:
        return _checked_rule(value)

    def validate_mapping(self, value):
        try:
            return field_rules.checked_mapping(value)
        except field_rules.MappingRefused as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, channel):
        data = super().to_representation(channel)
        data["source_config"] = sources.public_source_config(channel)
        return data

    def validate_tags(self, value):
        try:
            return checked_tags(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_enabled(self, value: bool) -> bool:
        try:
            return checked_enabled(self.instance, value) if self.instance else value
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        source_type = attrs.get("source_type") or getattr(self.instance, "source_type", "mllp")
        stored = getattr(self.instance, "source_config", None)
        same_type = self.instance is not None and source_type == self.instance.source_type
        submitted = attrs.get("source_config", stored or {})
        try:  # checked whole now, not when a listener starts or the first message comes
            attrs["source_config"] = sources.checked_source_config(
                source_type,
                submitted,
                stored if same_type else None,
                channel_id=getattr(self.instance, "pk", None),
            )
        except ConfigError as exc:
            raise serializers.ValidationError({"source_config": [str(exc)]}) from None
        return attrs


class MappingSerializer(serializers.Serializer):
    """A channel's field rules (see adapters.mapping.field_rules) and lookup tables."""

    rules = serializers.ListField(child=serializers.DictField(), required=False)
    tables = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField()), required=False
    )


class CloneSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    source_config = serializers.JSONField(
        required=False,
        help_text="Merged over the original's source settings: an MLLP clone needs its own port.",
    )

    def validate_name(self, value):
        try:
            return checked_new_name(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        original = self.context["channel"]
        changed = attrs.get("source_config", {})
        if not isinstance(changed, dict):
            raise serializers.ValidationError({"source_config": ["must be a JSON object"]})
        try:
            attrs["source_config"] = sources.checked_source_config(
                original.source_type,
                {**sources.public_source_config(original), **changed},
                original.source_config,
            )
        except ConfigError as exc:
            raise serializers.ValidationError({"source_config": [str(exc)]}) from None
        return attrs


class ChannelVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    note = serializers.CharField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(source="created_by.username", default=None)
    snapshot = serializers.JSONField(help_text="The channel and its destinations; no secrets.")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["snapshot"] = sources.public_snapshot(data["snapshot"])
        return data


class RollbackSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)


class ChangeSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="The setting, e.g. destinations.EHR.timeout_s.")
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class DraftSerializer(serializers.Serializer):
    """A channel's draft: the document (``Channel.snapshot()``'s shape, runtime state left out,
    destinations with their ``id``; secrets as the marker, which keeps them) and a proposed note.
    Reads add who changed it last, when, and its ``changes`` against the live configuration."""

    snapshot = serializers.JSONField()
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    exists = serializers.BooleanField(read_only=True)
    updated_by = serializers.CharField(read_only=True, allow_null=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)
    changes = ChangeSerializer(many=True, read_only=True)

    @staticmethod
    def of(channel: Channel, draft) -> dict:
        return {
            "snapshot": drafts.draft_of(channel),
            "note": draft.note if draft else "",
            "exists": draft is not None,
            "updated_by": draft.updated_by.username if draft and draft.updated_by else None,
            "updated_at": draft.updated_at.isoformat() if draft else None,
            "changes": drafts.draft_diff(channel),
        }


class PublishSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class DraftWriteSerializer(serializers.Serializer):
    """The query string of a write to a channel's configuration: it goes to the draft, or
    published at once as a new version with ``?publish=true&note=...``."""

    publish = serializers.BooleanField(
        default=False,
        help_text="true: publish the draft (with this change and any earlier unpublished one) "
        "as a new version in the same request, as POST draft/publish/ does.",
    )
    note = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="The note of the version (kept on the draft until it is published).",
    )


class DraftStateSerializer(serializers.Serializer):
    url = serializers.CharField(
        help_text="The draft: GET, PUT or DELETE it; POST publish/ under it."
    )
    changes = ChangeSerializer(many=True, help_text="The draft against what runs.")


class DraftedSerializer(serializers.Serializer):
    """What a write answers beside the object as the draft now holds it (or, published, as it
    now runs)."""

    draft = DraftStateSerializer(
        read_only=True,
        allow_null=True,
        help_text="The channel's draft, which holds the change; null once it is published.",
    )
    version = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="The version published by ?publish=true; null when the change is drafted.",
    )


class DraftedChannelSerializer(DraftedSerializer, ChannelSerializer):
    class Meta(ChannelSerializer.Meta):
        fields = [*ChannelSerializer.Meta.fields, "draft", "version"]


class DraftedMappingSerializer(DraftedSerializer, MappingSerializer):
    pass


class SamplePreviewSerializer(serializers.Serializer):
    sample = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["unchanged", "changed", "failed"])
    diff = serializers.CharField(help_text="A unified diff, live against draft.")
    changed = serializers.ListField(
        child=serializers.CharField(), help_text="Where they differ (Patient.identifier[0].system)."
    )
    error = serializers.JSONField(allow_null=True, help_text="What stops it under the draft.")


class DestinationSerializer(serializers.ModelSerializer):
    config = serializers.JSONField(
        help_text="Transport settings. Secrets are write-only: they read back as a marker, and "
        "sending the marker (or leaving a secret out) keeps the stored value."
    )

    class Meta:
        model = Destination
        fields = [
            "id",
            "channel",
            "name",
            "enabled",
            "paused",
            "transport",
            "config",
            "route_when",
            *Destination.POLICY,
            "breaker_state",
            "breaker_changed_at",
        ]
        read_only_fields = ["paused", "breaker_state", "breaker_changed_at"]
        extra_kwargs = POLICY_LIMITS  # the console's form applies the same bounds
        # A name is unique among the destinations the channel's draft lists (checked with the
        # draft), not among the live rows: the draft may have renamed one already.
        validators: list = []

    def to_representation(self, destination):
        data = super().to_representation(destination)
        data["config"] = sealing.public_config(destination)
        return data

    def validate_route_when(self, value: str) -> str:
        return _checked_rule(value)

    def validate_ordering_key(self, value: str) -> str:
        try:
            return checked_ordering_key(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        transport = attrs.get("transport") or getattr(self.instance, "transport", None)
        config = attrs.get("config", getattr(self.instance, "config", None) or {})
        # A changed config is merged over the stored one: secrets are write-only.
        stored = self.instance.config or {} if self.instance is not None else None
        try:
            config = checked_config(transport, config, stored if "config" in attrs else None)
        except ConfigError as exc:
            raise serializers.ValidationError({"config": str(exc)}) from None
        if "config" in attrs or self.instance is None:
            attrs["config"] = config
        return attrs


class DraftedDestinationSerializer(DraftedSerializer, DestinationSerializer):
    class Meta(DestinationSerializer.Meta):
        fields = [*DestinationSerializer.Meta.fields, "draft", "version"]


def _checked_rule(value: str) -> str:
    try:
        return checked_rule(value)
    except RuleError as exc:  # names the parser's position
        raise serializers.ValidationError(str(exc)) from None


class RoutingDecisionSerializer(serializers.Serializer):
    destination = serializers.IntegerField()
    destination_name = serializers.CharField()
    routed = serializers.BooleanField()
    reason = serializers.CharField(help_text="The rule and what it gave, or the error.")


class DestinationStateSerializer(serializers.Serializer):
    destination = serializers.IntegerField()
    destination_name = serializers.CharField()
    status = serializers.ChoiceField(choices=Delivery.Status.choices)
    label = serializers.CharField()
    attempts = serializers.IntegerField()


class MessageSerializer(serializers.ModelSerializer):
    channel_name = serializers.CharField(source="channel.name", read_only=True)
    outcome = serializers.SerializerMethodField(
        help_text="What happened to the message as a whole, from its deliveries "
        "(status says only how far the pipeline took it: PROCESSED is routed, not delivered)."
    )
    outcome_label = serializers.SerializerMethodField()
    destinations = serializers.SerializerMethodField(help_text="Each destination's state.")
    error_detail = serializers.SerializerMethodField()
    routing = serializers.SerializerMethodField(
        help_text="Where routing sent the message and why, per destination."
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "channel",
            "channel_name",
            "status",
            "outcome",
            "outcome_label",
            "destinations",
            "received_at",
            "processed_at",
            "message_type",
            "control_id",
            "sending_application",
            "sending_facility",
            "content_type",
            "size",
            "error_stage",
            "error_class",
            "error_path",
            "error_detail",
            "routing",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=Outcome.choices))
    def get_outcome(self, message) -> str:
        return self._outcome(message)

    def get_outcome_label(self, message) -> str:
        return Outcome.labels.get(self._outcome(message), "")

    @extend_schema_field(DestinationStateSerializer(many=True))
    def get_destinations(self, message) -> list[dict]:
        return self._states(message)

    def _states(self, message) -> list[dict]:
        known = self.context.get("destinations")
        if known is None:  # one message: read here
            known = self.context["destinations"] = destination_states([message.pk])
        return known.get(message.pk, [])

    def _outcome(self, message) -> str:
        found = getattr(message, "outcome", None)
        if found is None:
            found = outcome_of(message.status, (d["status"] for d in self._states(message)))
        return found

    @extend_schema_field(RoutingDecisionSerializer(many=True))
    def get_routing(self, message) -> list[dict]:
        from console.phi import mask_routing

        return message.routing if self.context.get("reveal") else mask_routing(message.routing)

    def get_error_detail(self, message) -> str:
        """Masked against the message's PHI values, which the view reads once per page
        (``context["phi"]``)."""
        from console.phi import UNKNOWN_PHI, mask_free_text

        if self.context.get("reveal"):
            return message.error_detail
        phi = self.context.get("phi", {}).get(message.pk, UNKNOWN_PHI)
        return mask_free_text(message.error_detail, phi)


class TimelineEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField(allow_null=True)
    kind = serializers.ChoiceField(
        choices=[
            "received",
            "resent_from",
            "processed",
            "error",
            "routing",
            "attempt",
            "delivered",
            "failed",
            "replay",
            "resent_as",
        ]
    )
    title = serializers.CharField()
    detail = serializers.CharField()
    message = serializers.IntegerField(required=False, help_text="The linked message.")
    replay_job = serializers.IntegerField(required=False)
    delivery = serializers.IntegerField(required=False)
    destination = serializers.IntegerField(required=False)


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "outcome",
            "status_code",
            "request_summary",
            "issues",
        ]


class DeliverySerializer(serializers.ModelSerializer):
    destination_name = serializers.CharField(source="destination.name", read_only=True)
    ordering_key = serializers.SerializerMethodField(
        help_text="The ordered lane, named without its value (often a patient identifier)."
    )

    class Meta:
        model = Delivery
        fields = [
            "id",
            "message",
            "destination",
            "destination_name",
            "status",
            "attempt_count",
            "created_at",
            "next_attempt_at",
            "delivered_at",
            "ordering_key",
            "idempotency_key",
        ]

    def get_ordering_key(self, delivery) -> str:
        from console.phi import lane_label

        return lane_label(delivery.ordering_key)


class MessageBodySerializer(serializers.Serializer):
    """One message's bodies: masked unless revealed (operator and above, audited)."""

    revealed = serializers.BooleanField()
    raw = serializers.CharField()
    canonical = serializers.JSONField(allow_null=True)
    issues = serializers.JSONField()


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor_name", "ip", "action", "target", "detail"]


class TokenSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="username", read_only=True)
    state = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "account",
            "name",
            "role",
            "prefix",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "replaced_by",
            "state",
        ]

    def get_state(self, token) -> str:
        from console.tokens import is_usable

        if token.revoked_at:
            return "revoked"
        return "active" if is_usable(token) else "expired"


class TokenRequestSerializer(serializers.Serializer):
    account = serializers.RegexField(
        r"^[\w.@+-]{1,150}$", help_text="A service account name; created if new."
    )
    role = serializers.ChoiceField(choices=[r.label for r in Role])
    expires_in_days = serializers.IntegerField(min_value=1, max_value=3650, default=90)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")

    def validate_account(self, value):
        user = get_user_model().objects.filter(username=value).first()
        if user is not None and user.has_usable_password():
            raise serializers.ValidationError(
                "this is a person's account; tokens are for service accounts"
            )
        return value


class TokenRotateSerializer(serializers.Serializer):
    overlap_hours = serializers.IntegerField(min_value=0, max_value=24 * 30, default=24)


class IssuedTokenSerializer(TokenSerializer):
    token = serializers.CharField(help_text="The bearer token. Shown once; store it now.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]


# --- replay and edit-and-resend


class ReplaySerializer(serializers.Serializer):
    mode = serializers.ChoiceField(
        choices=ReplayJob.Mode.choices,
        help_text="redeliver: the same payload to the destinations that failed; reprocess: parse "
        "and map again with the channel's current mapping.",
    )


class BulkReplaySerializer(ReplaySerializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        allow_empty=False,
        max_length=replay.MAX_SELECTION,
        help_text="These messages. Without ids: every failed message the list's filters (query "
        "string: the same filters as GET /api/v1/messages/) match.",
    )
    dry_run = serializers.BooleanField(
        default=False,
        help_text="Only count: how many would be replayed, skipped (and why), and to which "
        "destinations. Nothing runs, no job is made.",
    )
    destinations = serializers.PrimaryKeyRelatedField(
        queryset=Destination.objects.only("id"),
        many=True,
        required=False,
        help_text="redeliver only: send again only to these destinations (default: every "
        "destination that failed). A reprocess routes by the channel's rules.",
    )
    rate = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=replay.MIN_RATE,
        max_value=replay.MAX_RATE,
        help_text="Messages per second (default: as fast as the workers go). A rated job "
        "always runs as a job.",
    )

    def validate(self, data):
        data["destinations"] = [d.pk for d in data.get("destinations", [])]
        try:
            replay.parse_destinations(data["mode"], data["destinations"])
        except ValueError as exc:
            raise serializers.ValidationError({"destinations": [str(exc)]}) from None
        return data


class ReplayPreviewDestinationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    messages = serializers.IntegerField(help_text="Messages it would be sent again.")


class ReplayPreviewSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(default=True)
    mode = serializers.CharField()
    matching = serializers.IntegerField(help_text="Messages selected (by ids or filters).")
    replay = serializers.IntegerField(help_text="Of those, how many would be replayed.")
    skipped = serializers.DictField(
        child=serializers.IntegerField(), help_text="The others, counted by reason."
    )
    destinations = ReplayPreviewDestinationSerializer(many=True)
    rerouted = serializers.IntegerField(
        help_text="reprocess: messages in error, whose destinations routing chooses anew."
    )
    too_many = serializers.BooleanField(help_text="More than one job takes: narrow the filter.")


class ReplayResultSerializer(serializers.Serializer):
    mode = serializers.CharField()
    replayed = serializers.IntegerField(help_text="Messages replayed.")
    skipped = serializers.DictField(
        child=serializers.IntegerField(), help_text="Messages not replayed, counted by reason."
    )


class ReplayJobSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)
    percent = serializers.IntegerField()
    skipped = serializers.DictField(child=serializers.IntegerField())
    destinations = serializers.ListField(source="destination_ids", child=serializers.IntegerField())

    class Meta:
        model = ReplayJob
        fields = [
            "id",
            "mode",
            "state",
            "selection",
            "destinations",
            "rate",
            "total",
            "done",
            "percent",
            "replayed",
            "skipped",
            "created_at",
            "created_by",
            "finished_at",
            "error",
        ]


class ReplayJobDetailSerializer(ReplayJobSerializer):
    """A job with what became of the messages it took (read from their deliveries now)."""

    outcomes = serializers.SerializerMethodField(
        help_text="Messages per outcome: delivered, failed (again), errored (again), retrying "
        "(still), in_progress, filtered, skipped (any reason; see skipped)."
    )
    settled = serializers.SerializerMethodField(
        help_text="No message of the job is still in progress or retrying."
    )

    class Meta(ReplayJobSerializer.Meta):
        fields = [*ReplayJobSerializer.Meta.fields, "outcomes", "settled"]

    def _counts(self, job) -> dict[str, int]:
        if not hasattr(job, "_outcomes"):
            job._outcomes = replay.outcomes(job)
        return job._outcomes

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_outcomes(self, job) -> dict[str, int]:
        return self._counts(job)

    def get_settled(self, job) -> bool:
        return replay.is_settled(self._counts(job))


class ReplayItemSerializer(serializers.ModelSerializer):
    message = serializers.IntegerField(source="message_id")

    class Meta:
        model = ReplayItem
        fields = ["message", "outcome", "detail", "at"]


class ResendSerializer(serializers.Serializer):
    raw = serializers.CharField(
        trim_whitespace=False,
        help_text="The edited message (HL7 v2 with one segment per line, or the original's JSON).",
    )


class ResentSerializer(serializers.Serializer):
    original = serializers.IntegerField()
    message = serializers.IntegerField(help_text="The new message, linked to the original.")
    status = serializers.CharField()


SAMPLE_TYPES = ["", *CONTENT_TYPES]


class DryRunRequestSerializer(serializers.Serializer):
    raw = serializers.CharField(required=False, trim_whitespace=False, help_text="The message.")
    content_type = serializers.ChoiceField(
        SAMPLE_TYPES, required=False, default="", help_text="Blank: as the channel takes it."
    )
    sample = serializers.IntegerField(required=False, help_text="Or run a saved sample.")

    def validate(self, attrs):
        if ("raw" in attrs) == ("sample" in attrs):
            raise serializers.ValidationError("give either raw or sample")
        return attrs


class SampleSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    channel = serializers.IntegerField(source="channel_id")
    name = serializers.CharField(max_length=100)
    raw = serializers.CharField(required=False, trim_whitespace=False)
    content_type = serializers.ChoiceField(SAMPLE_TYPES, required=False, default="")
    message = serializers.IntegerField(
        required=False, write_only=True, help_text="Copy this stored message's body (audited)."
    )
    accepted = serializers.JSONField(read_only=True)
    accepted_at = serializers.DateTimeField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    def validate(self, attrs):
        if ("raw" in attrs) == ("message" in attrs):
            raise serializers.ValidationError("give either raw or message")
        return attrs


class SampleChangeSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    raw = serializers.CharField(required=False, trim_whitespace=False)
    content_type = serializers.ChoiceField(SAMPLE_TYPES, required=False)


class SampleOutcomeSerializer(serializers.Serializer):
    sample = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(["passed", "changed", "failed", "unaccepted"])
    diff = serializers.CharField(help_text="Unified diff, accepted → now (or → draft).")
    changed = serializers.ListField(
        child=serializers.CharField(), help_text="Where they differ (Patient.identifier[0].system)."
    )


class SuiteRunSerializer(serializers.Serializer):
    against = serializers.ChoiceField(["live", "draft"], help_text="What the samples ran on.")
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="Samples per status."
    )
    samples = SampleOutcomeSerializer(many=True)


class ImportRequestSerializer(serializers.Serializer):
    document = serializers.CharField(
        max_length=MAX_IMPORT_BYTES,
        trim_whitespace=False,
        help_text="The YAML file, as export gives it (GET /api/v1/channels/export/).",
    )
    dry_run = serializers.BooleanField(default=False, help_text="Show the changes; apply none.")
    publish = serializers.BooleanField(
        default=False, help_text="Record each changed channel as a new version."
    )


class ImportChangeSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="e.g. channels[ADT demo].destinations[fhir].config.url")
    kind = serializers.ChoiceField(choices=["added", "removed", "changed"])
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)
    note = serializers.CharField(required=False)


class ImportedChannelSerializer(serializers.Serializer):
    name = serializers.CharField()
    new = serializers.BooleanField()
    id = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField(allow_null=True, required=False)
    changes = ImportChangeSerializer(many=True)


class ImportResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    publish = serializers.BooleanField()
    channels = ImportedChannelSerializer(many=True)


class AlertNoticeSerializer(serializers.ModelSerializer):
    """How one notice of an alert fared: sent, still being retried, or given up (and why)."""

    class Meta:
        model = AlertNotice
        fields = [
            "event",
            "via",
            "state",
            "attempts",
            "last_error",
            "created_at",
            "next_attempt_at",
            "sent_at",
        ]


class AlertSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    kind = serializers.CharField(source="rule.kind", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    notices = AlertNoticeSerializer(many=True, read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "rule_name",
            "kind",
            "state",
            "value",
            "detail",
            "opened_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "notices",
        ]
        read_only_fields = fields


class AlertRuleSerializer(serializers.ModelSerializer):
    """An alert rule. The webhook secret is write-only (sealed at rest when encryption is on):
    it reads back as ``has_webhook_secret``; leaving it out keeps the saved one, an empty string
    removes it."""

    threshold = serializers.FloatField(
        required=False, allow_null=True, help_text="Not needed for a breaker or listener rule."
    )
    webhook_secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=200
    )
    has_webhook_secret = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "name",
            "kind",
            "channel",
            "destination",
            "threshold",
            "window_min",
            "message_type",
            "active_from",
            "active_until",
            "enabled",
            "notify_emails",
            "webhook_url",
            "webhook_secret",
            "has_webhook_secret",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def get_has_webhook_secret(self, rule: AlertRule) -> bool:
        return bool(rule.webhook_secret)

    def validate_webhook_secret(self, value: str) -> str:
        return alerts.seal_secret(value)

    def validate(self, attrs):
        settings = {
            field: attrs[field] if field in attrs else getattr(self.instance, field, None)
            for field in ("kind", "channel", "destination", "threshold")
            + ("active_from", "active_until")
        }
        problems = alerting.rule_problems(settings)
        if problems:
            raise serializers.ValidationError(problems)
        return attrs
