"""What happens to a channel as a whole: cloned, archived, deleted. Plain functions over models;
the console (console.channel_actions) audits them for the pages and the API alike."""

from __future__ import annotations

from django.db import models, transaction
from django.utils import timezone

from channels_app.models import Channel, Destination, Message


class DeleteRefused(Exception):
    """The channel has received messages: archive it instead (its history must stay)."""


def configuration(model: type[models.Model], exclude: tuple[str, ...]) -> list[str]:
    """The model's own stored fields that are configuration: not its id, not ``exclude``, not
    its runtime state. Read from the model, so a field added later is copied too."""
    skipped = {"id", *exclude, *getattr(model, "RUNTIME", ())}
    return [f.attname for f in model._meta.concrete_fields if f.name not in skipped]


@transaction.atomic
def clone(channel: Channel, name: str, source_config: dict) -> Channel:
    """A copy of ``channel`` named ``name`` with ``source_config`` (its own address), every
    destination with its settings and rules, disabled: it starts when someone enables it."""
    copy = Channel(**{f: getattr(channel, f) for f in configuration(Channel, ("name",))})
    copy.name, copy.source_config, copy.enabled = name, source_config, False
    copy.save()
    fields = configuration(Destination, ("channel",))
    Destination.objects.bulk_create(
        Destination(channel=copy, **{f: getattr(d, f) for f in fields})
        for d in channel.destinations.order_by("id")
    )
    return copy


def checked_new_name(name: str) -> str:
    """A name for a new channel (a clone's): ValueError when one already bears it."""
    name = (name or "").strip()
    if not name:
        raise ValueError("a name is required")
    if Channel.objects.filter(name=name).exists():
        raise ValueError(f"a channel named “{name}” exists")
    return name


def checked_enabled(channel: Channel, enabled: bool) -> bool:
    """An archived channel stays stopped: it is restored first, then enabled."""
    if enabled and channel.archived:
        raise ValueError("an archived channel cannot be enabled: restore it first")
    return enabled


def archive(channel: Channel) -> None:
    """Hide the channel and stop its source (listeners stop on ``enabled=False``)."""
    channel.archived_at = channel.archived_at or timezone.now()
    channel.enabled = False
    channel.save(update_fields=["archived_at", "enabled", "updated_at"])


def restore(channel: Channel) -> None:
    """Show an archived channel again, still disabled: enabling it is a choice of its own."""
    channel.archived_at = None
    channel.save(update_fields=["archived_at", "updated_at"])


def deletable(channel: Channel) -> bool:
    return not Message.objects.filter(channel=channel).exists()


@transaction.atomic
def delete(channel: Channel) -> None:
    """Delete a channel that never received a message, with its destinations and versions."""
    locked = Channel.objects.select_for_update().get(pk=channel.pk)
    if not deletable(locked):
        raise DeleteRefused(f"channel “{channel.name}” has received messages: archive it instead")
    locked.delete()


MAX_TAGS, MAX_TAG_LENGTH = 12, 40


def checked_tags(value) -> list[str]:
    """Tags as stored: a list of short labels, trimmed, lower case, each once, in the order
    given; ValueError says what is wrong. The form (comma-separated) and the API (a list) share it."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise ValueError('a list of labels, e.g. ["lab", "north"]')
    tags = list(dict.fromkeys(t.strip().lower() for t in value if t.strip()))
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for tag in tags:
        if len(tag) > MAX_TAG_LENGTH or "," in tag:
            raise ValueError(
                f"“{tag[:MAX_TAG_LENGTH]}…”: a tag is at most {MAX_TAG_LENGTH} characters, no comma"
            )
    return tags
