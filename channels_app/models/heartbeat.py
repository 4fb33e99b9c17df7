"""What the listener processes say they are doing, one row per (process, channel source)."""

from __future__ import annotations

from django.db import models


class SourceHeartbeat(models.Model):
    """Upserted every few seconds by each `run_listeners` process for every source it runs (or
    failed to start). A row not refreshed for a while belongs to a process that is gone."""

    class State(models.TextChoices):
        STARTING = "starting"
        LISTENING = "listening"
        ERROR = "error"
        STOPPED = "stopped"

    # host:pid:nonce, so processes on several hosts (and a restarted one) never share a row.
    process = models.CharField(max_length=200)
    channel = models.ForeignKey("channels_app.Channel", on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=20, choices=State.choices)
    error = models.TextField(blank=True)
    connections = models.PositiveIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["process", "channel"], name="heartbeat_process_channel")
        ]
        indexes = [models.Index(fields=["channel", "-heartbeat_at"], name="heartbeat_recent")]

    def __str__(self) -> str:
        return f"{self.process} channel {self.channel_id}: {self.state}"
