"""A bulk replay: what was selected, where it may go and how fast, how far it got, and what
became of each message it took (ReplayItem)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


class ReplayJob(models.Model):
    class Mode(models.TextChoices):
        REDELIVER = "redeliver", "Re-deliver the same payload"
        REPROCESS = "reprocess", "Re-process with the current mapping"

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        DONE = "done", "Finished"
        FAILED = "failed", "Failed"

    mode = models.CharField(max_length=10, choices=Mode.choices)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # How the messages were chosen (the filter, or "ids"), as the operator gave it.
    selection = models.JSONField(default=dict, blank=True)
    message_ids = ArrayField(models.BigIntegerField(), default=list)
    # Redeliver only to these destinations (empty: to every destination that failed).
    destination_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # Messages per second (None: as fast as the workers go).
    rate = models.FloatField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    total = models.PositiveIntegerField(default=0)
    # message_ids[:done] are replayed or skipped; a task that restarts carries on from here.
    done = models.PositiveIntegerField(default=0)
    replayed = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(default=dict, blank=True)  # reason -> count
    # Moved on by every step: a running job that stops moving lost its task (the sweeper resumes it).
    updated_at = models.DateTimeField(default=timezone.now)
    # A rated job's next step is not taken before this (a second chain of tasks steps aside).
    next_step_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["updated_at"], name="replayjob_running", condition=models.Q(state="running")
            )
        ]

    def __str__(self) -> str:
        return f"replay job #{self.pk} ({self.mode}, {self.done}/{self.total})"

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.done / self.total)

    @property
    def is_over(self) -> bool:
        return self.state in (self.State.DONE, self.State.CANCELLED, self.State.FAILED)


class ReplayItem(models.Model):
    """One message a job took, and what became of it. Outcomes still moving (in progress,
    retrying) are read again from the message and its deliveries until they settle."""

    class Outcome(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        RETRYING = "retrying", "Still retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed again"
        ERRORED = "errored", "Errored again"
        FILTERED = "filtered", "Filtered"
        SKIPPED = "skipped", "Skipped"

    MOVING = (Outcome.IN_PROGRESS, Outcome.RETRYING)

    job = models.ForeignKey(ReplayJob, on_delete=models.CASCADE, related_name="items")
    # The timeline finds a message's replays by this column's index.
    message = models.ForeignKey(
        "channels_app.Message", on_delete=models.CASCADE, related_name="replay_items"
    )
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    detail = models.CharField(max_length=200, blank=True)  # why it was skipped
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "message"]
        constraints = [
            models.UniqueConstraint(fields=["job", "message"], name="replayitem_once_per_job")
        ]
        indexes = [models.Index(fields=["job", "outcome"], name="replayitem_outcome")]

    def __str__(self) -> str:
        return f"message #{self.message_id} in replay job #{self.job_id}: {self.outcome}"
