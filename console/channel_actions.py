"""Channels as analysts change them, from a page or the REST API alike: each action is one
function here, which does the work (channels_app.channels) and writes its audit entry with the
before/after diff of the channel's public form (secrets only as the marker). Values come validated:
by console.forms.ChannelForm + SourceForm on the pages, by ChannelSerializer in the API, which
share their checks (channels_app.sources, channels_app.channels.checked_tags)."""

from __future__ import annotations

from django.db import transaction

from channels_app import channels, drafts
from channels_app.models import Channel, ChannelDraft, ChannelVersion
from channels_app.sources import public_snapshot, public_source_config
from console import audit


def public(channel: Channel) -> dict:
    """What the audit log records of a channel: its settings, secrets as the marker."""
    data = {field: getattr(channel, field) for field in Channel.EDITABLE}
    data["source_config"] = public_source_config(channel)
    data["enabled"] = channel.enabled
    data["archived"] = channel.archived
    return data


@transaction.atomic
def create(request, values: dict) -> Channel:
    channel = Channel.objects.create(**values)
    audit.record_change(request, "channel", channel.pk, None, public(channel))
    return channel


@transaction.atomic
def set_enabled(request, channel: Channel, enabled: bool) -> dict:
    """Start or stop the channel's source: an action of its own, not configuration (no draft);
    the diff, as audited."""
    before = public(channel)
    channel.enabled = enabled
    channel.save()
    return audit.record_change(request, "channel", channel.pk, before, public(channel))


@transaction.atomic
def clone(request, channel: Channel, name: str, source_config: dict) -> Channel:
    copy = channels.clone(channel, name, source_config)
    detail = {
        "from": channel.pk,
        "destinations": copy.destinations.count(),
        "changes": audit.changes({}, public(copy)),
    }
    audit.record(request, "channel.cloned", target=f"channel:{copy.pk}", detail=detail)
    return copy


@transaction.atomic
def archive(request, channel: Channel) -> dict:
    return _changed(request, channel, channels.archive, "channel.archived")


@transaction.atomic
def restore(request, channel: Channel) -> dict:
    return _changed(request, channel, channels.restore, "channel.restored")


def delete(request, channel: Channel) -> None:
    """Delete a channel that never received a message (raises channels.DeleteRefused)."""
    pk, before = channel.pk, public(channel)
    with transaction.atomic():
        channels.delete(channel)
        detail = {"changes": audit.changes(before, {})}
        audit.record(request, "channel.deleted", target=f"channel:{pk}", detail=detail)


def _changed(request, channel: Channel, change, action: str) -> dict:
    before = public(channel)
    change(channel)
    diff = audit.changes(before, public(channel))
    audit.record(request, action, target=f"channel:{channel.pk}", detail={"changes": diff})
    return diff


# --- drafts and versions: what the channel pages and the API both call ----------------------


def _changes(diff: list[dict]) -> dict:
    """A draft or version diff as the audit log writes changes: {path: [before, after]}."""
    return {change["path"]: [change["before"], change["after"]] for change in diff}


@transaction.atomic
def save_draft(request, channel: Channel, snapshot, note: str = "") -> ChannelDraft:
    """Keep ``snapshot`` as the channel's draft (drafts.DraftError when it is wrong); audited
    with what it changes against the draft it replaces (``draft.changes``)."""
    before = drafts.draft_of(channel)
    draft = drafts.save_draft(channel, snapshot, request.user, note)
    changed = drafts.diff(before, draft.snapshot)
    secrets = drafts.changed_secrets(channel, before, draft.snapshot)
    if changed or secrets:
        detail = {"changes": _changes(changed), **_secrets(secrets)}
        audit.record(request, "channel.draft_saved", target=f"channel:{channel.pk}", detail=detail)
    draft.changes = changed
    return draft


def _secrets(places: list[str]) -> dict:
    """The secrets a change set, changed or removed, as the audit names them: never a value."""
    return {"secrets": dict.fromkeys(places, audit.SECRET_CHANGED)} if places else {}


@transaction.atomic
def change_draft(
    request, channel: Channel, snapshot, *, publish: bool = False, note: str = ""
) -> tuple[ChannelDraft, ChannelVersion | None]:
    """Save ``snapshot`` as the channel's draft and, when asked, publish the draft at once as a
    new version (any earlier unpublished change with it): each step audited as on its own, and
    both or neither (drafts.DraftError leaves the draft as it was)."""
    if publish:
        _refuse_others_unpublished(request, channel)
    draft = save_draft(request, channel, snapshot, note)
    version = publish_draft(request, channel, note) if publish else None
    return draft, version


def _refuse_others_unpublished(request, channel: Channel) -> None:
    """An edit published at once must not carry someone else's unpublished draft live unseen:
    they publish (or discard) it from the draft, where its whole diff is shown first."""
    draft = ChannelDraft.objects.filter(channel=channel).select_related("updated_by").first()
    if draft and draft.updated_by_id != request.user.pk and drafts.draft_diff(channel):
        by = draft.updated_by.username if draft.updated_by else "someone else"
        raise drafts.DraftError(
            {
                "publish": f"the draft holds unpublished changes by {by}: review and publish or "
                "discard the draft first, or save this change to the draft without publish"
            }
        )


@transaction.atomic
def discard_draft(request, channel: Channel) -> bool:
    changed = drafts.draft_diff(channel)
    discarded = drafts.discard_draft(channel)
    if discarded:
        detail = {"changes": _changes(changed)}
        audit.record(
            request, "channel.draft_discarded", target=f"channel:{channel.pk}", detail=detail
        )
    return discarded


@transaction.atomic
def publish_draft(request, channel: Channel, note: str = "") -> ChannelVersion:
    """Put the draft live as a new version; audited with its diff against what ran before."""
    live, draft = drafts.live_snapshot(channel), drafts.draft_of(channel)
    changed = drafts.diff(live, draft)
    secrets = drafts.changed_secrets(channel, live, draft)
    names = dict(channel.destinations.values_list("pk", "name"))
    version = drafts.publish_draft(channel, request.user, note)
    detail = {
        "version": version.number,
        "note": version.note,
        "changes": _changes(changed),
        **_secrets(secrets),
        **_set_aside(channel, names, draft),
    }
    audit.record(request, "channel.published", target=f"channel:{channel.pk}", detail=detail)
    return version


def _set_aside(channel: Channel, names: dict[int, str], draft: dict) -> dict:
    """Destinations the draft left out whose name another took: kept, disabled, under a new
    name ("NAME (removed)"), which the draft's own diff does not show."""
    listed = {d.get("id") for d in draft.get("destinations", [])}
    renamed = [
        {"destination": pk, "from": names[pk], "to": name}
        for pk, name in channel.destinations.values_list("pk", "name")
        if pk in names and pk not in listed and names[pk] != name
    ]
    return {"set_aside": renamed} if renamed else {}


@transaction.atomic
def rollback(request, channel: Channel, number: int) -> ChannelVersion:
    """Publish version ``number``'s settings as a new version; audited with what it changed."""
    before = public_snapshot(channel.snapshot())
    version = channel.rollback(number, user=request.user)
    detail = {
        "to_version": number,
        "version": version.number,
        "changes": audit.changes(before, public_snapshot(channel.snapshot())),
    }
    audit.record(request, "channel.rolled_back", target=f"channel:{channel.pk}", detail=detail)
    return version
