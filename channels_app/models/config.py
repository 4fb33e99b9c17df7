"""What analysts configure: channels (a source), their versions, and destinations."""

from __future__ import annotations

import copy
import itertools
import uuid

from django.conf import settings
from django.db import models, transaction
from django.db.models import Value
from django.db.models.functions import Cast, Concat
from django.forms.models import model_to_dict

from channels_app.sealing import merge_config, merged, public_config, seal_config


class Channel(models.Model):
    class SourceType(models.TextChoices):
        MLLP = "mllp", "MLLP listener"
        HTTP = "http", "HTTP inbound"
        FILE = "file", "File pickup"

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # Free labels to group channels by on the Channels page (e.g. "lab", "site-north").
    tags = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # Archived: hidden from lists and its source stopped (enabled is cleared with it); its
    # messages, versions and audit stay.
    archived_at = models.DateTimeField(null=True, blank=True)
    source_type = models.CharField(
        max_length=20, choices=SourceType.choices, default=SourceType.MLLP
    )
    # Connector settings, e.g. {"host": "127.0.0.1", "port": 2575} for MLLP.
    source_config = models.JSONField(default=dict, blank=True)
    dedupe_window_s = models.PositiveIntegerField(
        default=24 * 3600,
        help_text="A repeated MSH-10 from the same sender within this window is ACKed and dropped.",
    )
    max_message_bytes = models.PositiveIntegerField(default=1024 * 1024)
    # Paused: messages are still received and ACKed; their deliveries wait as QUEUED.
    paused = models.BooleanField(default=False)
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Bodies older than this many days are pruned (metadata kept); blank keeps them.",
    )
    # A FHIRPath condition (adapters.routing): a message it is false for goes to no destination.
    route_filter = models.TextField(
        blank=True,
        help_text="A FHIRPath condition on the canonical Bundle (v2 header as %messageType, "
        "%sendingFacility ...): messages it is false for are filtered. Blank: all pass.",
    )
    # Analyst field rules applied after the built-in v2 map (channels_app.field_rules):
    # {"rules": [...], "tables": {"name": {"code": "value"}}}.
    mapping = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # What an analyst sets on a channel, in the console's form and the API alike (enabling,
    # archiving and pausing have their own actions; destinations their own forms).
    EDITABLE = (
        "name",
        "description",
        "tags",
        "source_type",
        "source_config",
        "dedupe_window_s",
        "max_message_bytes",
        "retention_days",
        "route_filter",
        "mapping",
    )
    # State the hub keeps, not configuration: a clone starts without it.
    RUNTIME = ("paused", "archived_at", "created_at", "updated_at")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # The source's secrets are sealed at rest like a destination's (however it was set:
        # form, API, clone, rollback); entries already sealed are kept as they are.
        from channels_app.sources import sealed_source_config

        self.source_config = sealed_source_config(self.source_type, self.source_config)
        super().save(*args, **kwargs)

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def port(self) -> int | None:
        return self.source_config.get("port")

    def current_version(self) -> ChannelVersion | None:
        return self.versions.order_by("-number").first()

    def snapshot(self) -> dict:
        data = model_to_dict(self, exclude=["id", "archived_at"])
        # Secrets never leave in a snapshot (versions, exports): they show as a marker. Each
        # destination's id lets a rollback find it again whatever names it has had since.
        data["destinations"] = [
            {"id": d.pk, **model_to_dict(d, exclude=["id", "channel"]), "config": public_config(d)}
            for d in self.destinations_by_id()
        ]
        return data

    def destinations_by_id(self) -> list[Destination]:
        """The channel's destinations in creation order (from a prefetch, when there is one)."""
        return sorted(self.destinations.all(), key=lambda d: d.pk)

    @transaction.atomic
    def publish(self, user=None, note: str = "") -> ChannelVersion:
        """Record the channel as it is now; messages processed from now on point at this version."""
        last = self.versions.select_for_update().order_by("-number").first()
        snapshot = self.snapshot()
        if last and _same(last.snapshot, snapshot):
            return last
        return ChannelVersion.objects.create(
            channel=self,
            number=(last.number + 1) if last else 1,
            snapshot=snapshot,
            created_by=user,
            note=note,
        )

    @transaction.atomic
    def rollback(self, number: int, user=None) -> ChannelVersion:
        """Put the channel and its destinations back as version ``number`` recorded them, and
        publish that as a new version (history only grows). Runtime state (paused, breaker) is
        left as it is; secrets come back as stored, since snapshots hold only their marker."""
        self.apply(self.versions.get(number=number).snapshot)
        return self.publish(user=user, note=f"rollback to v{number}")

    def apply(
        self, snapshot: dict, fields: tuple[str, ...] | None = None, *, save: bool = True
    ) -> list[Destination]:
        """Set the channel's ``fields`` (default CHANNEL_SETTINGS) and its destinations as
        ``snapshot`` has them; the destinations as they then stand, enabled or not. A secret the
        snapshot shows as the marker keeps its stored value; a destination the snapshot lacks is
        disabled, not deleted (messages point at it), and renamed "NAME (removed)" when another
        takes its name. Destinations are found by id, so renames (two swapping names too) keep
        each one's row and history. With ``save=False`` nothing is written: what a dry run "as
        if the snapshot were live" runs with (apply it to a copy)."""
        from channels_app.sources import source_secrets

        stored = self.source_config if snapshot.get("source_type") == self.source_type else {}
        for field in CHANNEL_SETTINGS if fields is None else fields:
            if field in snapshot:
                setattr(self, field, snapshot[field])
        # A source secret shown as the marker keeps its stored value (one sealed is taken).
        self.source_config = merged(stored, self.source_config, source_secrets(self.source_type))
        if save:
            self.save()
        current = list(self.destinations.order_by("id"))
        applied = []
        for recorded, destination in _matched(snapshot.get("destinations", []), current):
            if destination is None:
                destination = Destination(transport=recorded["transport"])
                if not save:  # a stand-in id, so routing can tell unsaved ones apart
                    destination.pk = -len(applied) - 1
            else:
                destination = copy.copy(destination)  # an unsaved apply leaves the rows alone
            destination.channel = self
            destination.name = recorded["name"]
            destination.transport = recorded["transport"]
            for field in DESTINATION_SETTINGS:
                if field in recorded:
                    setattr(destination, field, recorded[field])
            destination.set_config(recorded.get("config") or {})
            applied.append(destination)
        kept = {d.pk for d in applied if d.pk is not None}
        dropped = [copy.copy(d) for d in current if d.pk not in kept]
        for destination in dropped:
            destination.enabled = False
        _rename_dropped(dropped, {d.name for d in applied})
        if save:
            with transaction.atomic():  # the temporary names never outlive it
                _free_names(applied + dropped, current)
                for destination in dropped:
                    destination.save(update_fields=["enabled", "name"])
                for destination in applied:
                    destination.save()
        return applied + dropped


def _same(recorded: dict, snapshot: dict) -> bool:
    """Whether a version records ``snapshot``: one recorded before snapshots held destination
    ids is compared without them (a publish with nothing changed makes no version)."""
    if recorded == snapshot:
        return True
    listed = recorded.get("destinations") or []
    if any("id" in d for d in listed):
        return False
    without = [{k: v for k, v in d.items() if k != "id"} for d in snapshot["destinations"]]
    return recorded == {**snapshot, "destinations": without}


def _matched(listed: list[dict], current: list[Destination]):
    """Each entry of a snapshot or draft with the row it sets (None: a new one): the row of its
    ``id``, else (an entry without one, or a version recorded before ids) the row of its name
    that no other entry claims by id. So a destination renamed keeps its row even when another
    takes its old name in the same change."""
    by_id = {d.pk: d for d in current}
    claimed = {entry.get("id") for entry in listed} & by_id.keys()
    by_name = {d.name: d for d in current if d.pk not in claimed}
    for entry in listed:
        found = by_id.get(entry.get("id"))
        yield entry, found if found is not None else by_name.pop(entry["name"], None)


def _rename_dropped(dropped: list[Destination], names: set[str]) -> None:
    """A destination the change leaves out is kept, disabled, for the deliveries that point at
    it; when another takes its name it becomes "NAME (removed)" (or "(removed 2)", ...)."""
    taken = names | {d.name for d in dropped}
    length = Destination._meta.get_field("name").max_length
    for destination in dropped:
        if destination.name not in names:
            continue
        for n in itertools.count(1):
            suffix = " (removed)" if n == 1 else f" (removed {n})"
            name = destination.name[: length - len(suffix)] + suffix
            if name not in taken:
                break
        destination.name = name
        taken.add(name)


def _free_names(destinations: list[Destination], current: list[Destination]) -> None:
    """Before the rows are saved, move each stored row whose name changes to a name no row holds:
    names are unique per channel at each statement, so two destinations trading names (or one
    taking a name another gives up) would otherwise meet halfway. Call it in a transaction that
    saves the final names, so the temporary ones are never seen."""
    stored = {d.pk: d.name for d in current}
    moving = [d.pk for d in destinations if d.pk in stored and stored[d.pk] != d.name]
    if moving:
        temporary = Concat(Value(f"{uuid.uuid4().hex} "), Cast("id", models.CharField()))
        Destination.objects.filter(pk__in=moving).update(name=temporary)


class ChannelVersion(models.Model):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField()
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "number"], name="channel_version_unique")
        ]
        ordering = ["channel", "-number"]

    def __str__(self) -> str:
        return f"{self.channel} v{self.number}"


class ChannelDraft(models.Model):
    """The channel as an analyst is changing it, not yet running: a snapshot-shaped document
    (channel settings and destinations; secrets as the marker unless changed in the draft, then
    sealed like the live rows). Published as a ChannelVersion by channels_app.drafts."""

    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, related_name="draft")
    snapshot = models.JSONField()
    note = models.CharField(max_length=200, blank=True, help_text="Proposed for the version.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.channel} (draft)"


class Destination(models.Model):
    class Transport(models.TextChoices):
        FHIR_REST = "fhir_rest", "FHIR REST server"
        FILE = "file", "File writer"
        WEBHOOK = "webhook", "HTTP webhook"
        MLLP = "mllp", "MLLP sender"

    # The delivery policy an analyst sets: what the console form, the API and a rollback share.
    POLICY = (
        "timeout_s",
        "max_attempts",
        "backoff_base_s",
        "backoff_max_s",
        "ordering_key",
        "rate_limit_per_s",
        "breaker_error_rate",
        "breaker_min_samples",
        "breaker_window_s",
        "breaker_cooldown_s",
    )

    # State the hub keeps, not configuration: a clone starts without it.
    RUNTIME = ("paused", "breaker_state", "breaker_changed_at")

    class BreakerState(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half-open"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="destinations")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    transport = models.CharField(max_length=20, choices=Transport.choices)
    # Transport settings, validated by the transport's config schema (adapters.registry).
    config = models.JSONField(default=dict, blank=True)
    timeout_s = models.FloatField(default=30.0)
    max_attempts = models.PositiveIntegerField(default=8, help_text="0 retries without limit.")
    backoff_base_s = models.FloatField(default=2.0)
    backoff_max_s = models.FloatField(default=600.0)
    paused = models.BooleanField(default=False)
    # Deliveries with the same key go out strictly in order; blank means no ordering.
    ordering_key = models.CharField(max_length=200, blank=True)
    rate_limit_per_s = models.FloatField(
        null=True, blank=True, help_text="Shared by all workers; blank means unlimited."
    )
    breaker_error_rate = models.FloatField(default=0.5)
    breaker_min_samples = models.PositiveIntegerField(default=20, help_text="0 disables it.")
    breaker_window_s = models.FloatField(default=60.0)
    breaker_cooldown_s = models.FloatField(default=30.0)
    breaker_state = models.CharField(
        max_length=10, choices=BreakerState.choices, default=BreakerState.CLOSED
    )
    breaker_changed_at = models.DateTimeField(null=True, blank=True)
    route_when = models.TextField(
        blank=True,
        help_text="A FHIRPath condition on the canonical Bundle, e.g. entry.resource"
        ".ofType(DiagnosticReport).where(status = 'final').exists(); the v2 header is there as "
        "%messageType, %messageCode, %triggerEvent, %sendingApplication, %sendingFacility. "
        "Blank: every message.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "name"], name="destination_name_unique")
        ]
        ordering = ["channel", "name"]

    def __str__(self) -> str:
        return f"{self.channel} → {self.name}"

    def save(self, *args, **kwargs):
        # Secrets the transport declares are sealed at rest (when HUB_ENCRYPTION_KEYS is set).
        self.config = seal_config(self.transport, self.config or {})
        super().save(*args, **kwargs)

    def set_config(self, config: dict) -> None:
        """Take a config from a form or the API: secrets are write-only, so one left blank (or
        sent back as the marker) keeps its stored value. Call save() to store it sealed."""
        self.config = merge_config(self.transport, self.config or {}, config)

    @property
    def public_config(self) -> dict:
        return public_config(self)


# What a version restores: configuration, not runtime state (pause, breaker) or identity.
CHANNEL_SETTINGS = (
    "description",
    "tags",
    "enabled",
    "source_type",
    "source_config",
    "dedupe_window_s",
    "max_message_bytes",
    "retention_days",
    "route_filter",
    "mapping",
)
DESTINATION_SETTINGS = ("enabled", "route_when", *Destination.POLICY)
