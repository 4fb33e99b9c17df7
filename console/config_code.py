"""Config as code as people ask for it: the Channels pages, the REST API and the management
commands all call these, which export and import through channels_app.config_io and write the
audit entries (an export holds the samples, which hold PHI; an import changes configuration).

Import applies a whole file in one transaction: a channel refused (checked again as it is
written) undoes the ones before it. Without ``publish`` the file becomes each existing channel's
draft (published later, after review); a new channel is created as it is.
"""

from __future__ import annotations

from django.db import transaction

from channels_app import config_io
from channels_app.config_io import Applied, ChannelPlan, Refused
from channels_app.models import Channel
from console import audit

__all__ = ["MAX_IMPORT_BYTES", "Refused", "exported", "imported", "preview"]

# What the page and the API take (under Django's 2.5 MB request limit); the command takes any.
MAX_IMPORT_BYTES = 2_000_000


def exported(request, channels, *, via: str, actor_name: str = "") -> str:
    """The YAML file of ``channels``, audited: it carries their samples."""
    channels = list(channels)
    text = config_io.export_yaml(channels)
    target = f"channel:{channels[0].pk}" if len(channels) == 1 else "channels"
    detail = {
        "via": via,
        "channels": sorted(c.name for c in channels),
        "samples": sum(c.samples.count() for c in channels),
    }
    audit.record(request, "channels.exported", target=target, detail=detail, actor_name=actor_name)
    return text


def preview(text: str) -> list[ChannelPlan]:
    """What importing ``text`` would change, channel by channel (Refused: every problem)."""
    return config_io.plan_document(text)


def imported(
    request, text: str, *, publish: bool, via: str, actor_name: str = "", user=None
) -> list[Applied]:
    """Import the whole file or nothing; each channel it changed is audited with its changes."""
    user = user or _user(request)
    with transaction.atomic():
        config_io.lock_imports()
        plans = config_io.plan_document(text)  # planned again under the lock
        applied = [config_io.apply_channel(p.given, user, publish=publish) for p in plans]
        for result in applied:
            _audit(request, result, via=via, actor_name=actor_name)
    return applied


def _user(request):
    user = getattr(request, "user", None)
    return user if getattr(user, "is_authenticated", False) else None


def _audit(request, result: Applied, *, via: str, actor_name: str) -> None:
    if not result.plan.changes and result.version is None:
        return
    detail = {
        "via": via,
        "new": result.plan.new,
        "version": result.version.number if result.version else None,
        "changes": [c.as_dict() for c in result.plan.changes],
    }
    audit.record(
        request,
        "channel.imported",
        target=f"channel:{result.channel.pk}",
        detail=detail,
        actor_name=actor_name,
    )


def listed_channels() -> list[Channel]:
    """What "export all" exports: the channels the Channels page lists (not archived)."""
    return list(Channel.objects.filter(archived_at__isnull=True).order_by("name"))
