"""A bulk replay in progress: what was selected, how far it got, and what it skipped and why."""

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
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    mode = models.CharField(max_length=10, choices=Mode.choices)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # How the messages were chosen (the filter, or "ids"), as the operator gave it.
    selection = models.JSONField(default=dict, blank=True)
    message_ids = ArrayField(models.BigIntegerField(), default=list)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    total = models.PositiveIntegerField(default=0)
    # message_ids[:done] are replayed or skipped; a task that restarts carries on from here.
    done = models.PositiveIntegerField(default=0)
    replayed = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(default=dict, blank=True)  # reason -> count
    # Moved on by every step: a running job that stops moving lost its task (the sweeper resumes it).
    updated_at = models.DateTimeField(default=timezone.now)
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
