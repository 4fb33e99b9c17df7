"""Samples an analyst keeps on a channel to try it with, each with the output they accepted.

Both hold PHI as message bodies do, so both are sealed at rest the same way (HUB_ENCRYPTION_KEYS);
``raw`` and ``accepted`` read and write them in the clear."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import models

from channels_app.models.config import Channel
from channels_app.sealing import seal, seal_json, unseal, unseal_json


class ChannelSample(models.Model):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="samples")
    name = models.CharField(max_length=100)
    raw_sealed = models.BinaryField()
    content_type = models.CharField(
        max_length=60, blank=True, help_text="Blank: as the channel would take it."
    )
    # The dry run's result (bundle, issues, routing, outputs, error) as accepted; null until then.
    accepted_sealed = models.BinaryField(null=True, blank=True)
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

    @property
    def raw(self) -> str:
        return unseal(self.raw_sealed).decode("utf-8", errors="replace")

    @raw.setter
    def raw(self, text: str) -> None:
        self.raw_sealed = seal(text.encode())

    @property
    def accepted(self) -> dict[str, Any] | None:
        return None if self.accepted_sealed is None else stable(unseal_json(self.accepted_sealed))

    @accepted.setter
    def accepted(self, result: dict[str, Any] | None) -> None:
        self.accepted_sealed = None if result is None else seal_json(stable(result))


# The name a dry run gives its payload (a file destination's {name}); older results added the
# destination's id to it.
DRY_RUN_NAME = "message-dry-run"
_OLD_DRY_RUN_NAME = re.compile(rf"{DRY_RUN_NAME}-\d+")


def stable(result: dict[str, Any]) -> dict[str, Any]:
    """A dry run's result with nothing that names a destination by its id, which an export and
    import (or a rebuilt channel) changes: routing by destination name, file names without the
    id. What a sample accepts and the suite compares; older accepted results are read so too."""
    found = dict(result)
    found["routing"] = [
        {k: v for k, v in decision.items() if k != "destination"}
        for decision in result.get("routing") or []
    ]
    found["outputs"] = {
        name: _stable_output(o) for name, o in (result.get("outputs") or {}).items()
    }
    return found


def _stable_output(output: Any) -> Any:
    target = output.get("target") if isinstance(output, dict) else None
    if not isinstance(target, str):
        return output
    return {**output, "target": _OLD_DRY_RUN_NAME.sub(DRY_RUN_NAME, target)}
