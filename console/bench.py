"""The test bench's actions as people ask for them, from the page or the REST API alike: the dry
run and the suite are channels_app's (dry_run, samples); this keeps the samples and writes the
audit entries. Copying a stored message's body into a sample is a PHI view and audited as one;
entries carry ids and names, never a body."""

from __future__ import annotations

from django.db import transaction

from channels_app import samples
from channels_app.models import Channel, ChannelSample, Message
from channels_app.samples import SampleRefused
from channels_app.sealing import unseal
from console import audit


def checked_sample(
    channel: Channel, name: str, raw: str, content_type: str = "", *, other_than: int | None = None
) -> dict:
    """The one validation of a sample, for the page's form and the API (``other_than``: the
    sample being changed, whose own name is not a clash)."""
    fields = samples.checked_fields(name, raw, content_type)
    if channel.samples.filter(name=fields["name"]).exclude(pk=other_than).exists():
        raise SampleRefused("name", f"the channel has a sample named {fields['name']!r} already")
    return fields


def save_sample(request, channel: Channel, name: str, raw: str, content_type: str = ""):
    fields = checked_sample(channel, name, raw, content_type)
    sample = ChannelSample.objects.create(channel=channel, created_by=request.user, **fields)
    audit.record(
        request, "sample.created", target=f"sample:{sample.pk}", detail={"name": sample.name}
    )
    return sample


def copy_message(request, channel: Channel, message_id: int, name: str) -> ChannelSample:
    """A sample made of a stored message's body as received (raises Message.DoesNotExist)."""
    message = Message.objects.only("id", "raw", "content_type").get(pk=message_id)
    raw = unseal(message.raw).decode("utf-8", errors="replace")
    with transaction.atomic():
        sample = save_sample(request, channel, name, raw, message.content_type)
        audit.record(
            request,
            "phi.copied_to_sample",
            target=f"message:{message.pk}",
            detail={"sample": sample.pk, "channel": channel.pk},
        )
    return sample


def change_sample(request, sample: ChannelSample, changes: dict) -> ChannelSample:
    """Rename a sample or replace its message; its accepted output stays, so the suite shows what
    the new message changes."""
    fields = {
        "name": changes.get("name", sample.name),
        "raw": changes.get("raw", sample.raw),
        "content_type": changes.get("content_type", sample.content_type),
    }
    fields = checked_sample(sample.channel, **fields, other_than=sample.pk)
    changed = sorted(k for k, v in fields.items() if getattr(sample, k) != v)
    for key in changed:
        setattr(sample, key, fields[key])
    if changed:
        sample.save()
        detail = {"name": sample.name, "changed": changed}
        audit.record(request, "sample.updated", target=f"sample:{sample.pk}", detail=detail)
    return sample


def accept(request, sample: ChannelSample):
    result = samples.accept(sample)
    audit.record(
        request, "sample.accepted", target=f"sample:{sample.pk}", detail={"name": sample.name}
    )
    return result


def delete_sample(request, sample: ChannelSample) -> None:
    detail = {"name": sample.name, "channel": sample.channel_id}
    audit.record(request, "sample.deleted", target=f"sample:{sample.pk}", detail=detail)
    sample.delete()
