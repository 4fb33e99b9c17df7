"""The hub's processes, as each one reports itself: who it is, since when, and that it lives."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ProcessHeartbeat(models.Model):
    """One row per running process, refreshed by the process itself (channels_app.process_heartbeat).

    A process that dies without a word keeps its row: its last beat ages, which is the point.
    """

    role = models.CharField(max_length=20)  # web, worker, deliver, beat, listeners
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(default=timezone.now)
    # How often the runner had started this role again before this process (from its env).
    restarts = models.PositiveIntegerField(default=0)
    # For listeners: the sockets they hold, "host:port" for each channel.
    sockets = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "pid"], name="process_heartbeat_host_pid")
        ]
        indexes = [models.Index(fields=["beat_at"])]

    def __str__(self) -> str:
        return f"{self.role} {self.host}:{self.pid}"
