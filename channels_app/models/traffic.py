"""What flows through the hub: messages, their deliveries, and every attempt at one."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from adapters.codecs.exact_json import ExactDecoder, ExactEncoder
from channels_app.sealing import unseal, unseal_json

DELIVERY_KEY_NAMESPACE = uuid.UUID("6f1c2a4e-8f0b-4c47-9a51-3d7d0e2b9c10")


class Message(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "RECEIVED", "Received"
        PROCESSED = "PROCESSED", "Routed"
        FILTERED = "FILTERED", "Filtered"
        ERROR = "ERROR", "Error"

    # Indexed by message_channel_recent (channel first): a second index would only cost writes.
    channel = models.ForeignKey(
        "channels_app.Channel", on_delete=models.PROTECT, related_name="messages", db_index=False
    )
    # Neither constraint nor index: a message's version is one of its own channel's (replays and
    # resends keep the channel), and versions are deleted only with their channel, which
    # `channel` protects while it has any message. So nothing can point at a deleted version and
    # the ORM need not look (DO_NOTHING); the lookup under lock cost every insert, and the index
    # two entries a message (inserted, then updated out of RECEIVED), read by no query.
    channel_version = models.ForeignKey(
        "channels_app.ChannelVersion",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED)
    message_type = models.CharField(max_length=40, blank=True)
    control_id = models.CharField(max_length=200, blank=True)
    sending_application = models.CharField(max_length=200, blank=True)
    sending_facility = models.CharField(max_length=200, blank=True)
    remote_addr = models.CharField(max_length=100, blank=True)
    raw = models.BinaryField()
    # How ``raw`` is encoded: HL7 v2 (MLLP, files, HTTP) or FHIR JSON (HTTP).
    content_type = models.CharField(max_length=60, db_default="x-application/hl7-v2+er7")
    size = models.PositiveIntegerField(default=0)
    # Read back exactly too: jsonb keeps 1.50 as written, a float would show 1.5.
    canonical = models.JSONField(null=True, blank=True, encoder=ExactEncoder, decoder=ExactDecoder)
    # With encryption at rest on, the canonical JSON lives here sealed and ``canonical`` is null.
    canonical_sealed = models.BinaryField(null=True, blank=True)
    pruned_at = models.DateTimeField(null=True, blank=True)
    issues = models.JSONField(default=list, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Where processing stopped and why; shown on the message page.
    error_stage = models.CharField(max_length=20, blank=True)
    error_class = models.CharField(max_length=100, blank=True)
    error_path = models.CharField(max_length=200, blank=True)
    error_detail = models.TextField(blank=True)
    # Where routing sent it and why: one {destination, destination_name, routed, reason} each.
    # A database default too: ingest inserts rows with SQL of its own.
    routing = models.JSONField(
        default=list, db_default=models.Value([], models.JSONField()), blank=True
    )
    # The sweeper re-enqueues RECEIVED work whose sweep_after has passed, then pushes it back.
    sweep_after = models.DateTimeField(default=timezone.now)
    # An operator's edited copy points at the message it was made from; the original is untouched.
    # (indexed only where set, below: almost every message has neither)
    resent_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resent_as",
        db_index=False,
    )
    resent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )

    class Meta:
        ordering = ["-id"]
        # Not implied by any role: an admin grants it to chosen operators (console.roles).
        permissions = [("resend_edited", "Can edit a message and send it again")]
        indexes = [
            models.Index(fields=["channel", "-received_at"], name="message_channel_recent"),
            models.Index(fields=["control_id"], name="message_control_id"),
            # The dashboard's error stream: the newest errors without walking every message.
            models.Index(fields=["-id"], name="message_errors", condition=models.Q(status="ERROR")),
            models.Index(
                fields=["sweep_after"],
                name="message_unprocessed",
                condition=models.Q(status="RECEIVED"),
            ),
            models.Index(
                fields=["resent_from"],
                name="message_resent_from",
                condition=models.Q(resent_from__isnull=False),
            ),
            models.Index(
                fields=["resent_by"],
                name="message_resent_by",
                condition=models.Q(resent_by__isnull=False),
            ),
            # The Channels page lists the types a channel received without a map.
            models.Index(
                fields=["channel", "message_type"],
                name="message_unmapped",
                condition=models.Q(error_class="UnsupportedMessageType"),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.message_type} {self.control_id}"

    @property
    def raw_text(self) -> str:
        """The message as received (opened when sealed at rest); empty once pruned."""
        data = unseal(self.raw)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")

    @property
    def canonical_json(self) -> dict | None:
        """The canonical FHIR bundle, wherever it is stored (sealed at rest or not)."""
        if self.canonical is not None:
            return self.canonical
        if self.canonical_sealed is not None:
            return unseal_json(self.canonical_sealed)
        return None

    def record_error(
        self, stage: str, exc: Exception, path: str = "", detail: str | None = None
    ) -> None:
        """Stop the message at ``stage`` (status ERROR) with the error's class, place and detail
        (``detail`` in place of the exception's own words). Saved by the caller."""
        for field, value in self.error_fields(stage, exc, path).items():
            setattr(self, field, value)
        if detail is not None:
            self.error_detail = detail[:4000]

    def error_fields(self, stage: str, exc: Exception, path: str = "") -> dict:
        return {
            "status": self.Status.ERROR,
            "error_stage": stage,
            "error_class": type(exc).__name__,
            "error_path": path[:200],
            "error_detail": str(exc)[:4000],
        }


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SENDING = "SENDING", "Sending"
        RETRY = "RETRY", "Retry scheduled"
        QUEUED = "QUEUED", "Queued (paused or circuit open)"
        DELIVERED = "DELIVERED", "Delivered"
        FAILED = "FAILED", "Failed"

    # Indexed by delivery_once_per_destination (message first).
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    destination = models.ForeignKey(
        "channels_app.Destination", on_delete=models.PROTECT, related_name="deliveries"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # PENDING/RETRY: when it may be sent next. SENDING: when the claim lapses (worker presumed dead).
    next_attempt_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    ordering_key = models.CharField(max_length=200, blank=True)
    # attempt_count when the delivery was last replayed: the destination's max_attempts counts
    # from here (a fresh budget), while attempt numbers carry on (history is never rewritten).
    attempts_at_replay = models.PositiveIntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "destination"], name="delivery_once_per_destination"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_open",
                condition=models.Q(status__in=["PENDING", "SENDING", "RETRY", "QUEUED"]),
            ),
            # What failed, for the console's filters and a bulk replay (a small set, read often).
            models.Index(
                fields=["message"],
                name="delivery_failed",
                condition=models.Q(status="FAILED"),
            ),
            models.Index(
                fields=["destination", "ordering_key", "id"],
                name="delivery_lane",
                condition=models.Q(status__in=["PENDING", "SENDING", "RETRY", "QUEUED"])
                & ~models.Q(ordering_key=""),
            ),
        ]

    def __str__(self) -> str:
        return f"delivery #{self.pk} of message #{self.message_id} to {self.destination_id}"

    @property
    def attempts_since_replay(self) -> int:
        """Attempts counted against the destination's max_attempts."""
        return self.attempt_count - self.attempts_at_replay

    @property
    def idempotency_key(self) -> str:
        """Stable for this message and destination: retries and replays carry the same key."""
        return str(uuid.uuid5(DELIVERY_KEY_NAMESPACE, f"{self.message_id}/{self.destination_id}"))


class Attempt(models.Model):
    class Outcome(models.TextChoices):
        SUCCESS = "SUCCESS", "Delivered"
        TRANSIENT = "TRANSIENT", "Failed, will retry"
        PERMANENT = "PERMANENT", "Failed permanently"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    status_code = models.IntegerField(null=True, blank=True)
    request_summary = models.CharField(max_length=500, blank=True)
    response_summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # What the destination said in detail, e.g. a FHIR OperationOutcome's issues.
    issues = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery #{self.delivery_id}: {self.outcome}"


class DedupeEntry(models.Model):
    """First sighting of (sender, MSH-10) per channel; repeats within the window count here."""

    # No constraint in the database and no index of its own (dedupe_key_unique leads with it):
    # an entry is derived data, and its check cost every message a lookup under lock. The ORM
    # still cascades when a channel is deleted; retention forgets the expired ones.
    channel = models.ForeignKey(
        "channels_app.Channel",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    key = models.CharField(max_length=500)
    seen_at = models.DateTimeField()
    duplicates = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "key"], name="dedupe_key_unique")]
        # A channel's "duplicates dropped" adds up the few entries that saw a repeat, not its
        # window's worth (a day of traffic) of entries that saw none.
        indexes = [
            models.Index(
                fields=["channel"],
                include=["duplicates"],
                condition=models.Q(duplicates__gt=0),
                name="dedupe_repeated",
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.duplicates} duplicates)"


class MessageKey(models.Model):
    """A business key a message carries (adapters.keys), stored once at processing so that a
    search by MRN, name or order number reads an index, never a body."""

    # Indexed by messagekey_of_message below (message first), not by an index of its own. No
    # constraint in the database: a key is derived data, written only by the process stage for
    # the message it holds locked, and removed with it (retention deletes keys first, the ORM
    # cascades); the constraint's check cost a query per key, seven a message.
    message = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        related_name="keys",
        db_index=False,
        db_constraint=False,
    )
    kind = models.CharField(max_length=20)
    value = models.CharField(max_length=200)
    # A patient identifier's assigning authority (PID-3.4); blank for other kinds.
    authority = models.CharField(max_length=200, blank=True)
    # Lower case, accents stripped: what a search compares, exactly or by its beginning. In
    # byte order ("C"): one plain index serves both, and the planner's statistics are in the
    # index's order, so it estimates a prefix's matches well (and picks a plan that fits).
    normalised = models.CharField(max_length=200, db_collation="C")

    class Meta:
        indexes = [
            # Holds kind and message too: a search reads the index only, never the table.
            models.Index(
                fields=["normalised"], name="messagekey_search", include=["kind", "message"]
            ),
            # A search's other words are looked for among each found message's own keys: read
            # from this index alone.
            models.Index(
                fields=["message", "normalised"], name="messagekey_of_message", include=["kind"]
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.value} of message #{self.message_id}"
