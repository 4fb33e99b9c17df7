"""A channel's draft: its configuration as an analyst is changing it, while the published version
runs. The console's forms, the REST API (and imports) write here; ``publish_draft`` puts it live.

A draft is a snapshot-shaped document (``Channel.snapshot()``: the channel's settings and its
destinations), runtime state left out (enabled, paused, breaker: immediate actions, not
configuration). Secrets show as the marker, which stands for the live secret; a secret changed in
the draft is held sealed, as the live rows hold it. Destinations carry their ``id`` (None for one
the draft adds), so renaming one keeps its history.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from adapters.registry import ConfigError, transport_names
from channels_app import samples
from channels_app.channels import checked_tags
from channels_app.destinations import (
    POLICY_LIMITS,
    checked_config,
    checked_ordering_key,
    secret_fingerprints,
    secrets_changed,
)
from channels_app.dry_run import dry_run
from channels_app.models import Channel, ChannelDraft, ChannelVersion, Destination
from channels_app.models.config import CHANNEL_SETTINGS, DESTINATION_SETTINGS
from channels_app.routing import RuleError, checked_rule
from channels_app.sealing import (
    SECRET_MARKER,
    SealError,
    masked,
    secret_fields,
    secret_values,
)
from channels_app.sources import (
    checked_source_config,
    public_snapshot,
    source_secret_fingerprints,
)

# What a draft sets on the channel: its settings and name, not whether it runs.
CHANNEL_FIELDS = ("name", *(f for f in CHANNEL_SETTINGS if f != "enabled"))
DESTINATION_FIELDS = ("id", "name", "transport", "config", *DESTINATION_SETTINGS)
# Snapshot keys that are runtime state: accepted in a document and ignored.
RUNTIME = {"enabled", "paused", "archived_at", "created_at", "updated_at"}
DESTINATION_RUNTIME = {"paused", "breaker_state", "breaker_changed_at", "channel"}
UNCHANGED, CHANGED, FAILED = "unchanged", "changed", "failed"


class DraftError(ValueError):
    """A draft that cannot be saved or published: ``errors`` maps each key path to what is
    wrong with it ("destinations.0.config": "...")."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {why}" for path, why in errors.items()))


# --- reading ------------------------------------------------------------------------------------


def live_snapshot(channel: Channel) -> dict:
    """The channel as it runs, as a draft document."""
    snapshot = public_snapshot(channel.snapshot())
    document = {field: snapshot[field] for field in CHANNEL_FIELDS}
    document["destinations"] = [
        {f: d[f] for f in DESTINATION_FIELDS} for d in snapshot["destinations"]
    ]
    return document


def draft_of(channel: Channel) -> dict:
    """The channel's draft, or the live configuration when it has none."""
    draft = ChannelDraft.objects.filter(channel=channel).first()
    return copy.deepcopy(draft.snapshot) if draft else live_snapshot(channel)


def has_draft(channel: Channel) -> bool:
    return ChannelDraft.objects.filter(channel=channel).exists()


def draft_channel(channel: Channel) -> Channel:
    """An unsaved copy of the channel with its draft's settings as the draft writes them
    (secrets as the marker): what the channel form edits."""
    shadow = copy.copy(channel)
    document = draft_of(channel)
    for field in CHANNEL_FIELDS:
        setattr(shadow, field, document[field])
    return shadow


def drafted(channel: Channel, snapshot: dict | None = None) -> tuple[Channel, list[Destination]]:
    """Unsaved instances: the channel and its destinations as if ``snapshot`` (default: its
    draft) were live, secrets the draft keeps opened from the live rows. Nothing is written."""
    shadow = copy.copy(channel)
    snapshot = draft_of(channel) if snapshot is None else snapshot
    destinations = shadow.apply(snapshot, CHANNEL_FIELDS, save=False)
    return shadow, destinations


def destination_entry(channel: Channel, document: dict, destination: Destination):
    """Where the draft ``document`` lists ``destination`` and its entry there: ``(index,
    entry)``, or ``(None, entry)`` for one the draft does not list: a new one (its transport and
    no settings yet) or one the draft removed (its live entry: editing it puts it back)."""
    if destination.pk is not None:
        for index, entry in enumerate(document["destinations"]):
            if entry.get("id") == destination.pk:
                return index, entry
        live = live_snapshot(channel)["destinations"]
        return None, next(d for d in live if d["id"] == destination.pk)
    return None, {"id": None, "transport": destination.transport, "config": {}}


def drafted_destination(destination: Destination, entry: dict) -> Destination:
    """An unsaved copy of ``destination`` with the draft entry's settings and config (secrets
    as the draft keeps them): what the destination form and the API edit."""
    shown = copy.copy(destination)
    for field in ("name", *DESTINATION_SETTINGS):
        if field in entry:
            setattr(shown, field, entry[field])
    shown.config = entry.get("config") or {}
    return shown


def with_destination(document: dict, index: int | None, entry: dict) -> dict:
    """``document`` with ``entry`` at ``index`` (None: added at the end)."""
    listed = list(document["destinations"])
    if index is None:
        listed.append(entry)
    else:
        listed[index] = entry
    return {**document, "destinations": listed}


# --- comparing ----------------------------------------------------------------------------------


def comparable(snapshot: dict) -> dict:
    """A snapshot (a version's, a draft) as two are compared: configuration only, secrets as
    the marker ("•••• (changed)" where the draft replaces one), destinations by name."""
    snapshot = public_snapshot(snapshot)
    shown = {k: v for k, v in snapshot.items() if k not in RUNTIME and k != "destinations"}
    shown["destinations"] = {
        d["name"]: {
            **{k: v for k, v in d.items() if k not in DESTINATION_RUNTIME and k != "id"},
            "config": _shown_config(d["transport"], d.get("config") or {}),
        }
        for d in snapshot.get("destinations", [])
    }
    return shown


def _shown_config(transport: str, config: dict) -> dict:
    """The config with each secret as the marker; one set to something else (sealed, or in the
    clear without keys) is a secret the draft changes."""
    shown = masked(config, secret_fields(transport))
    changed = _flat(config)
    return _unflat(
        {
            path: f"{SECRET_MARKER} (changed)"
            if value == SECRET_MARKER and changed.get(path, SECRET_MARKER) != SECRET_MARKER
            else value
            for path, value in _flat(shown).items()
        }
    )


def diff(a: dict, b: dict) -> list[dict]:
    """What changed from snapshot ``a`` to snapshot ``b``: one entry per setting, by its dotted
    path (``destinations.EHR.timeout_s``), with its value before and after (None: absent)."""
    before, after = _flat(comparable(a)), _flat(comparable(b))
    before, after = _filled(before, after), _filled(after, before)
    return [
        {"path": path, "before": before.get(path), "after": after.get(path)}
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    ]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {dotted path: leaf}; a list, a sealed entry or an empty dict is a leaf."""
    if not isinstance(value, dict) or not value or "sealed" in value:
        return {prefix: value}
    found = {}
    for key, item in value.items():
        found |= _flat(item, f"{prefix}.{key}" if prefix else str(key))
    return found


def _filled(flat: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``flat`` without an empty dict whose place the other side fills: a first rule in an empty
    mapping is that rule added, not ``mapping: {}`` removed."""
    return {
        path: value
        for path, value in flat.items()
        if value != {} or not any(key.startswith(f"{path}.") for key in other)
    }


def _unflat(flat: dict[str, Any]) -> dict:
    nested: dict = {}
    for path, value in flat.items():
        if path == "":
            return value
        *parents, last = path.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return nested


def changed_secrets(channel: Channel, a: dict, b: dict) -> list[str]:
    """The secrets set, changed or removed from snapshot ``a`` to ``b`` (drafts of the channel,
    or its live snapshot), by place (``destinations.EHR.config.url``): compared opened, since
    one a URL's user info carries shows the same before and after. Never their values."""
    source_a, destinations_a = _fingerprints(channel, a)
    source_b, destinations_b = _fingerprints(channel, b)
    places = secrets_changed(source_a, source_b)
    for name in sorted(destinations_a.keys() & destinations_b.keys()):
        changed = secrets_changed(destinations_a[name], destinations_b[name])
        places += [f"destinations.{name}.{place}" for place in changed]
    return places


def _fingerprints(channel: Channel, snapshot: dict) -> tuple[dict, dict]:
    """Digests of the source's secrets, and of each destination's by its name."""
    shadow, destinations = drafted(channel, snapshot)
    by_name = {d.name: secret_fingerprints(d.transport, d.config) for d in destinations}
    return source_secret_fingerprints(shadow), by_name


def draft_diff(channel: Channel) -> list[dict]:
    """The draft against the live configuration."""
    return diff(live_snapshot(channel), draft_of(channel))


# --- writing ------------------------------------------------------------------------------------


def save_draft(channel: Channel, snapshot: Any, user=None, note: str = "") -> ChannelDraft:
    """Keep ``snapshot`` as the channel's draft, checked as the forms and the API check a
    change (raises DraftError naming each wrong key); the live channel is not touched."""
    document = checked(channel, snapshot)
    draft, _ = ChannelDraft.objects.update_or_create(
        channel=channel, defaults={"snapshot": document, "updated_by": user, "note": note}
    )
    return draft


def discard_draft(channel: Channel) -> bool:
    return ChannelDraft.objects.filter(channel=channel).delete()[0] > 0


@transaction.atomic
def publish_draft(channel: Channel, user=None, note: str = "") -> ChannelVersion:
    """Apply the draft to the live channel and destinations (secrets the draft shows as the
    marker are kept), record it as a new version, and drop the draft: all or nothing."""
    draft = ChannelDraft.objects.select_for_update().filter(channel=channel).first()
    if draft is None:
        raise DraftError({"draft": "the channel has no draft"})
    channel = Channel.objects.select_for_update().get(pk=channel.pk)
    document = checked(channel, draft.snapshot)  # a port may have been taken since
    channel.apply(document, CHANNEL_FIELDS)
    version = channel.publish(user=user, note=note or draft.note)
    draft.delete()
    return version


# --- checking -----------------------------------------------------------------------------------


def checked(channel: Channel, snapshot: Any) -> dict:
    """``snapshot`` as a draft document: known keys only (runtime ones dropped), each value
    checked and normalised as the channel and destination forms do. DraftError otherwise."""
    if not isinstance(snapshot, dict):
        raise DraftError({"": "must be a JSON object"})
    errors: dict[str, str] = {}
    document = _checked_channel(channel, snapshot, errors)
    document["destinations"] = _checked_destinations(channel, snapshot, errors)
    if errors:
        raise DraftError(errors)
    return document


def _checked_channel(channel: Channel, snapshot: dict, errors: dict) -> dict:
    unknown = set(snapshot) - {*CHANNEL_FIELDS, "destinations"} - RUNTIME
    errors |= {key: "unknown key" for key in sorted(unknown)}
    current = live_snapshot(channel)
    values = {f: snapshot.get(f, current[f]) for f in CHANNEL_FIELDS}
    candidate = copy.copy(channel)
    for field, value in values.items():
        setattr(candidate, field, value)
    _clean(candidate, "", errors, exclude=["source_config", "tags"])
    if Channel.objects.filter(name=candidate.name).exclude(pk=channel.pk).exists():
        errors["name"] = f"a channel named “{candidate.name}” exists"
    document = {f: getattr(candidate, f) for f in CHANNEL_FIELDS}
    _check(errors, "tags", checked_tags, values["tags"], into=document)
    if "route_filter" not in errors:
        _check(errors, "route_filter", checked_rule, document["route_filter"], into=document)
    if "source_type" not in errors:
        _check(
            errors,
            "source_config",
            lambda config: checked_source_config(
                candidate.source_type, config, None, channel_id=channel.pk
            ),
            values["source_config"],
            into=document,
        )
    return document


def _checked_destinations(channel: Channel, snapshot: dict, errors: dict) -> list[dict]:
    listed = snapshot.get("destinations", [])
    if not isinstance(listed, list):
        errors["destinations"] = "must be a list"
        return []
    own = {d.pk: d for d in channel.destinations.all()}
    found, names, ids = [], set(), set()
    for index, entry in enumerate(listed):
        where = f"destinations.{index}"
        if not isinstance(entry, dict):
            errors[where] = "must be a JSON object"
            continue
        document = _checked_destination(own, entry, where, errors)
        if document["id"] is not None:
            if document["id"] in ids:
                errors[f"{where}.id"] = "the draft lists this destination twice"
            ids.add(document["id"])
        if f"{where}.name" in errors:
            continue
        if document["name"] in names:
            errors[f"{where}.name"] = f"another destination is named “{document['name']}”"
        names.add(document["name"])
        found.append(document)
    return found


def _checked_destination(own: dict, entry: dict, where: str, errors: dict) -> dict:
    unknown = set(entry) - set(DESTINATION_FIELDS) - DESTINATION_RUNTIME
    errors |= {f"{where}.{key}": "unknown key" for key in sorted(unknown)}
    pk = entry.get("id")
    if pk is not None and (not isinstance(pk, int) or pk not in own):
        errors[f"{where}.id"] = "not a destination of this channel"
        pk = None
    transport = entry.get("transport") or (own[pk].transport if pk else "")
    if not isinstance(transport, str) or transport not in transport_names():
        transport = ""
        errors[f"{where}.transport"] = f"one of {', '.join(transport_names())}"
    candidate = Destination(transport=transport)
    defaults = {f: getattr(own[pk] if pk else candidate, f) for f in DESTINATION_SETTINGS}
    for field in ("name", *DESTINATION_SETTINGS):
        setattr(candidate, field, entry.get(field, defaults.get(field)))
    _clean(candidate, where, errors, exclude=["channel", "config", "transport"])
    document = {f: getattr(candidate, f) for f in DESTINATION_FIELDS if f != "config"}
    document["id"] = pk
    for field, limits in POLICY_LIMITS.items():
        value = document[field]
        low, high = limits.get("min_value"), limits.get("max_value")
        if isinstance(value, int | float) and value < low:
            errors[f"{where}.{field}"] = f"must be at least {low}"
        if isinstance(value, int | float) and high is not None and value > high:
            errors[f"{where}.{field}"] = f"must be at most {high}"
    for field, check in (("route_when", checked_rule), ("ordering_key", checked_ordering_key)):
        if f"{where}.{field}" not in errors:
            _check(errors, f"{where}.{field}", check, document[field], into=document, key=field)
    document["config"] = entry.get("config") or {}
    if transport:
        live = own[pk].config if pk and own[pk].transport == transport else {}
        _check(
            errors,
            f"{where}.config",
            lambda config: _retyped_as_marker(transport, checked_config(transport, config), live),
            document["config"],
            into=document,
            key="config",
        )
    return document


def _retyped_as_marker(transport: str, config: dict, live: dict) -> dict:
    """``config`` with each secret set to the value the live row holds shown as the marker
    again: typing a secret again (a header's value, say) is no change."""
    stored = secret_values(transport, live)
    same = [p for p, value in secret_values(transport, config).items() if stored.get(p) == value]
    config = copy.deepcopy(config)
    for place in same:
        _mark(config, place)
    return config


def _mark(node: dict, place: str) -> None:
    """Put the marker at a dotted ``place`` (a header name may hold dots: keys are matched)."""
    for key, value in node.items():
        if place == key:
            url = isinstance(value, dict) and "shown" in value or "://" in str(value)
            if not url:  # a URL's user info stays in its URL
                node[key] = SECRET_MARKER
            return
        if place.startswith(f"{key}.") and isinstance(value, dict):
            _mark(value, place[len(key) + 1 :])
            return


def _clean(instance, where: str, errors: dict, exclude: list[str]) -> None:
    """Django's own field checks (types, lengths, choices), values normalised in place."""
    try:
        instance.clean_fields(exclude=exclude)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors[f"{where}.{field}" if where else field] = " ".join(messages)


def _check(errors: dict, path: str, check, value, *, into: dict | None = None, key: str = ""):
    try:
        result = check(value)
    except (ValueError, RuleError, ConfigError, SealError) as exc:
        errors[path] = str(exc)
        return
    if into is not None:
        into[key or path] = result


# --- previewing ---------------------------------------------------------------------------------


@dataclass
class SamplePreview:
    sample: int
    name: str
    status: str  # unchanged, changed (diff says how), failed (the draft stops it; error says why)
    diff: str
    error: dict | None
    changed: list[str]  # the places that differ (samples.changed_places)

    def as_dict(self) -> dict:
        return {
            "sample": self.sample,
            "name": self.name,
            "status": self.status,
            "diff": self.diff,
            "changed": self.changed,
            "error": self.error,
        }


def preview(channel: Channel) -> list[SamplePreview]:
    """Each saved sample run through the dry run as the channel runs now and as its draft would:
    what publishing would change for it. Nothing is stored or sent."""
    shadow, destinations = drafted(channel)
    found = []
    for sample in channel.samples.order_by("name"):
        live = dry_run(channel, sample.raw, sample.content_type).comparable()
        draft = dry_run(
            shadow, sample.raw, sample.content_type, destinations=destinations
        ).comparable()
        if live == draft:
            status, shown, places = UNCHANGED, "", []
        else:
            status = FAILED if draft["error"] and not live["error"] else CHANGED
            shown = samples.diff(live, draft, labels=("live", "draft"))
            places = samples.changed_places(live, draft)
        found.append(SamplePreview(sample.pk, sample.name, status, shown, draft["error"], places))
    return found
