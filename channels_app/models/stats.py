"""Closed minutes of traffic statistics, rolled up from Redis by beat (channels_app.stats)."""

from __future__ import annotations

from django.db import models


class StatMinute(models.Model):
    """One minute of one channel (destination_id 0) or one of its destinations: counts by name
    and latency histograms by metric ({metric: {bucket index: count}}, channels_app.histogram).

    Ids are plain numbers, not foreign keys: history outlives a deleted channel, and a roll-up
    never fails on one."""

    minute = models.DateTimeField()
    channel_id = models.BigIntegerField()
    destination_id = models.BigIntegerField(default=0)
    counts = models.JSONField(default=dict)
    histograms = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "channel_id", "destination_id"], name="stat_minute_unique"
            )
        ]
        indexes = [models.Index(fields=["minute"], name="stat_minute_time")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} channel {self.channel_id} dest {self.destination_id}"
