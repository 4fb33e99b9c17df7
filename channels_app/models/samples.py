"""Samples an analyst keeps on a channel to try it with, each with the output they accepted."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from channels_app.models.config import Channel


class ChannelSample(models.Model):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="samples")
    name = models.CharField(max_length=100)
    raw = models.TextField()
    content_type = models.CharField(
        max_length=60, blank=True, help_text="Blank: as the channel would take it."
    )
    # The dry run's result (bundle, issues, routing, outputs, error) as accepted; null until then.
    accepted = models.JSONField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "name"], name="channel_sample_name_unique")
        ]
        ordering = ["channel", "name"]

    def __str__(self) -> str:
        return f"{self.channel} / {self.name}"
