"""Config as code: channels written to YAML and read back, for git-based workflows.

The file::

    # Integration hub channels ...
    version: 1
    channels:
    - name: ADT demo
      description: ...
      ...                       # every key of CHANNEL_KEYS, in that order
      destinations:
      - name: fhir              # every key of DESTINATION_KEYS, in that order
        ...
      samples:
      - name: admission         # SAMPLE_KEYS: name, content_type, raw, accepted
        ...

Key order is fixed: channels, destinations and samples by name; their keys in the order of
CHANNEL_KEYS, DESTINATION_KEYS and SAMPLE_KEYS (the channel's settings as
``models.config.CHANNEL_SETTINGS`` declares them, a destination's as ``DESTINATION_SETTINGS``);
inside free-form settings (``source_config``, ``mapping``, a destination's ``config``, an accepted output)
keys are sorted. So an export imported and exported again gives the same bytes. Text that holds
carriage returns and no line feed (an HL7 v2 message) is written as ``!segments``: one segment a
line, read back with carriage returns, byte for byte.

Left out: runtime state (paused, breaker, archived, ids, timestamps) and secrets, which show as
the marker ``••••`` (a URL's user info too). On import a marker keeps the secret stored in that
place; a marker where nothing is stored (a new channel or destination) is refused, since the hub
cannot invent the secret: write the secret in the file or create the destination in the console.

A file describes its channels completely: a key it leaves out takes the default (the diff shows
it), a destination or sample it leaves out is removed (a destination that deliveries point at
is disabled instead, keeping its history). Channels the file does not name are not touched.

Reading is all or nothing: `plan_document` checks the whole file (unknown keys, source settings,
destination configs, routing conditions, field rules) and raises `Refused` with every `Problem`,
each naming its place (``channels[ADT demo].destinations[fhir].config.base_url``) and why;
otherwise it answers one `ChannelPlan` per channel with the changes it would make. Applying is
`apply_channel`, one channel per call, inside the caller's transaction (the console wraps a
whole file in one). Pure functions over the models; the console writes the audit.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.utils import timezone

from adapters.registry import ConfigError
from channels_app import drafts
from channels_app.channels import checked_enabled, checked_tags
from channels_app.destinations import (
    POLICY_LIMITS,
    checked_config,
    checked_ordering_key,
    fingerprints,
    secret_fingerprints,
    secrets_changed,
)
from channels_app.field_rules import checked_mapping
from channels_app.models import Channel, ChannelSample, ChannelVersion, Delivery, Destination
from channels_app.models.config import CHANNEL_SETTINGS, DESTINATION_SETTINGS
from channels_app.routing import checked_rule
from channels_app.samples import SampleRefused, checked_fields
from channels_app.sealing import SECRET_MARKER, SealError, masked, public_config
from channels_app.sources import (
    SCHEMAS,
    checked_source_config,
    public_source_config,
    source_secrets,
)

FORMAT_VERSION = 1
HEADER = (
    "# Integration hub channels, config as code: secrets show as ••••, which keeps the stored\n"
    "# secret on import. python manage.py import_channels FILE.yaml [--dry-run] [--publish]\n"
)
TOP_KEYS = ("version", "channels")
CHANNEL_KEYS = ("name", *CHANNEL_SETTINGS, "destinations", "samples")
DESTINATION_KEYS = ("name", "transport", "config", *DESTINATION_SETTINGS)
SAMPLE_KEYS = ("name", "content_type", "raw", "accepted")
# Settings whose value is free-form JSON: written with sorted keys.
FREE_FORM = {"source_config", "config", "accepted", "mapping"}
IMPORT_NOTE = "imported from YAML"
SEGMENTS_TAG = "!segments"


# --- problems ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: str  # channels[ADT demo].destinations[fhir].config.base_url
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason

    def as_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


class Refused(ValueError):
    """A file (or one channel of it) that cannot be imported; nothing of it was applied."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


# --- writing -----------------------------------------------------------------------------------


def export_yaml(channels) -> str:
    """The YAML file for ``channels`` (by name), secrets as the marker."""
    docs = [channel_document(c) for c in sorted(channels, key=lambda c: c.name)]
    return dump({"version": FORMAT_VERSION, "channels": docs})


def channel_document(channel: Channel) -> dict:
    """A stored channel as the file holds it."""
    samples = [
        {"name": s.name, "content_type": s.content_type, "raw": s.raw, "accepted": s.accepted}
        for s in channel.samples.order_by("name")
    ]
    return _document(channel, list(channel.destinations.all()), samples)


def _document(channel: Channel, destinations: list[Destination], samples: list[dict]) -> dict:
    """Stored or about to be: the same function writes the export and the import's "after"."""
    doc = {"name": channel.name}
    for key in CHANNEL_SETTINGS:
        doc[key] = getattr(channel, key)
    doc["source_config"] = public_source_config(channel)
    doc["destinations"] = [_destination_document(d) for d in sorted(destinations, key=_name)]
    doc["samples"] = [{k: s[k] for k in SAMPLE_KEYS} for s in sorted(samples, key=_name_key)]
    return _sorted_free_form(doc)


def _destination_document(destination: Destination) -> dict:
    doc = {"name": destination.name, "transport": destination.transport}
    doc["config"] = public_config(destination)
    for key in DESTINATION_SETTINGS:
        doc[key] = getattr(destination, key)
    return doc


def _name(row) -> str:
    return row.name


def _name_key(row: dict) -> str:
    return row["name"]


def _sorted_free_form(value: Any, key: str = "") -> Any:
    if key in FREE_FORM:
        return _sorted(value)
    if isinstance(value, dict):
        return {k: _sorted_free_form(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_sorted_free_form(v) for v in value]
    return value


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True  # a file people edit: no anchors, every value written where it is


def _text(dumper: yaml.SafeDumper, text: str):
    text = str(text)  # a model's choice (a str subclass) as its value
    if "\r" in text and "\n" not in text:
        return dumper.represent_scalar(SEGMENTS_TAG, text.replace("\r", "\n"), style="|")
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    )


_Dumper.add_representer(str, _text)
_Dumper.add_multi_representer(str, _text)


def dump(doc: dict) -> str:
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


# --- reading -----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML as the file needs it: no aliases (a small file must not expand into a huge one), no
    duplicate keys, dates left as text (settings are JSON)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                None, None, "aliases (*name) are not taken", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it in its own words
            if key in seen:
                raise yaml.MarkedYAMLError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor(
    SEGMENTS_TAG, lambda loader, node: loader.construct_scalar(node).replace("\n", "\r")
)


def load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise Refused([Problem("", f"not readable as YAML: {exc}")]) from None
    except RecursionError:
        raise Refused([Problem("", "not readable as YAML: nested too deeply")]) from None


def load_document(text: str) -> list[dict]:
    """The channels of a file, checked as a whole (its keys, the version, names given once);
    each channel is checked by `plan_channel`."""
    data = load(text)
    if not isinstance(data, dict):
        raise Refused([Problem("", "the file must be a mapping with version and channels")])
    problems = _unknown_keys(data, TOP_KEYS, "")
    if data.get("version") != FORMAT_VERSION:
        problems.append(Problem("version", f"must be {FORMAT_VERSION}"))
    channels = data.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
        problems.append(Problem("channels", "must be a list of channels (mappings)"))
        raise Refused(problems)
    problems += _names(channels, "channels")
    if problems:
        raise Refused(problems)
    return channels


def _unknown_keys(mapping: dict, allowed: tuple[str, ...], where: str) -> list[Problem]:
    found = []
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (allowed: {', '.join(allowed)})"
            found.append(Problem(_join(where, str(key)), f"unknown key{hint}"))
    return found


def _names(items: list[dict], where: str) -> list[Problem]:
    """Each item needs a name of its own: a list's items are found by it."""
    problems, seen = [], set()
    for index, item in enumerate(items):
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(Problem(f"{where}[{index}].name", "is required (text)"))
        elif name in seen:
            problems.append(Problem(f"{where}[{name}]", "is named twice"))
        else:
            seen.add(name)
    return problems


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def plan_document(text: str) -> list[ChannelPlan]:
    """Every channel of the file checked and compared with what is stored; Refused with every
    problem of every channel, when there is one."""
    plans, problems = [], []
    for doc in load_document(text):
        try:
            plans.append(plan_channel(doc))
        except Refused as exc:
            problems += exc.problems
    if problems:
        raise Refused(problems)
    return plans


# --- planning ----------------------------------------------------------------------------------

ABSENT = object()  # one side of a change that has no value there


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any
    note: str = ""

    @property
    def kind(self) -> str:
        if self.before is ABSENT:
            return "added"
        return "removed" if self.after is ABSENT else "changed"

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.path}: {self.note or 'added ' + _shown(self.after)}"
        if self.kind == "removed":
            return f"- {self.path}: {self.note or 'removed'}"
        return f"~ {self.path}: {_shown(self.before)} -> {_shown(self.after)}"

    @property
    def before_shown(self) -> str:
        return _shown(self.before)

    @property
    def after_shown(self) -> str:
        return _shown(self.after)

    def as_dict(self) -> dict:
        def value(v):
            return None if v is ABSENT else v

        found = {"path": self.path, "kind": self.kind}
        found |= {"before": value(self.before), "after": value(self.after)}
        return found | ({"note": self.note} if self.note else {})


def _shown(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class DestinationPlan:
    name: str
    transport: str
    config: dict  # merged over the stored one, sealed: ready to store
    settings: dict  # DESTINATION_SETTINGS


@dataclass
class ChannelPlan:
    name: str
    channel: Channel | None  # the stored channel of that name, if any
    settings: dict  # CHANNEL_SETTINGS, source_config ready to store
    destinations: list[DestinationPlan]
    samples: list[dict]
    given: dict  # the channel as the file gives it: what apply_channel takes
    changes: list[Change] = field(default_factory=list)
    document: dict = field(default_factory=dict)  # as an export will read after applying

    @property
    def new(self) -> bool:
        return self.channel is None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "new": self.new,
            "changes": [c.as_dict() for c in self.changes],
        }


def plan_channel(doc: dict) -> ChannelPlan:
    """One channel of a file, checked whole against what is stored; Refused naming each
    problem's place. Reads the database, writes nothing."""
    name = doc.get("name") if isinstance(doc, dict) else None
    where = f"channels[{name}]" if isinstance(name, str) and name.strip() else "channels[?]"
    if not isinstance(doc, dict):
        raise Refused([Problem(where, "must be a mapping")])
    checker = _Checker(where)
    checker.plain(doc, where)
    if checker.problems:  # the checks below query with these values: they must be storable
        raise Refused(checker.problems)
    checker.problems += _unknown_keys(doc, CHANNEL_KEYS, where)
    stored = Channel.objects.filter(name=name).first() if isinstance(name, str) else None
    settings = checker.channel_settings(doc, stored)
    destinations = checker.destinations(doc.get("destinations", []), stored)
    samples = checker.samples(doc.get("samples", []))
    if checker.problems:
        raise Refused(checker.problems)
    plan = ChannelPlan(name, stored, settings, destinations, samples, doc)
    plan.document = _planned_document(plan)
    plan.changes = _changes(plan, where)
    return plan


class _Checker:
    """Collects the problems of one channel while reading its values."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[Problem] = []

    def refuse(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))

    def plain(self, value: Any, path: str) -> None:
        """JSON and text PostgreSQL can store: no NUL, no NaN, keys that are text."""
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    self.refuse(path, f"key {key!r} must be text")
                self.plain(item, _join(path, str(key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.plain(item, f"{path}[{index}]")
        elif isinstance(value, str):
            if "\x00" in value:
                self.refuse(path, "holds a NUL character, which cannot be stored")
        elif isinstance(value, float):
            if not math.isfinite(value):
                self.refuse(path, "must be a finite number")
        elif not (value is None or isinstance(value, bool | int)):
            self.refuse(path, f"a {type(value).__name__} is not a JSON value")

    def value(self, model, key: str, given: dict, path: str, check=None) -> Any:
        """The model field's value from ``given`` (its default when left out), checked by the
        field and by ``check``."""
        model_field = model._meta.get_field(key)
        value = given[key] if key in given else model_field.get_default()
        try:
            value = _field_value(model_field, value)
            return check(value) if check else value
        except (ValueError, ValidationError) as exc:
            reason = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            self.refuse(path, reason)
            return None

    def channel_settings(self, doc: dict, stored: Channel | None) -> dict:
        # A setting without a check here is checked by its model field alone: one that holds
        # rules adds its compile check here.
        checks = {
            "tags": checked_tags,
            "route_filter": checked_rule,
            # The field's default ({}) stays as it is: "no rules" as stored, for a same-bytes export.
            "mapping": lambda v: checked_mapping(v) if v else {},
            "enabled": lambda v: checked_enabled(stored, v) if stored else v,
        }
        settings = {
            key: self.value(Channel, key, doc, _join(self.where, key), checks.get(key))
            for key in CHANNEL_SETTINGS
            if key != "source_config"
        }
        settings["name"] = self.value(Channel, "name", doc, _join(self.where, "name"))
        source_type = settings.get("source_type")
        config = self.source_config(doc.get("source_config", {}), source_type, stored)
        if config is not None:
            settings["source_config"] = config
        return settings

    def source_config(self, submitted: Any, source_type, stored: Channel | None) -> dict | None:
        """The source's settings ready to store (merged over the stored ones), or None."""
        path = _join(self.where, "source_config")
        if not isinstance(submitted, dict):
            self.refuse(path, "must be a mapping")
            return None
        kept = stored.source_config if stored and stored.source_type == source_type else None
        before = len(self.problems)
        if source_type in SCHEMAS:
            self.problems += _unknown_keys(submitted, _source_keys(source_type), path)
        self._unkept_markers(submitted, masked(kept or {}, source_secrets(source_type or "")), path)
        if source_type is None or len(self.problems) > before:
            return None
        try:
            channel_id = stored.pk if stored else None
            return checked_source_config(source_type, submitted, kept, channel_id=channel_id)
        except ConfigError as exc:
            self._config_errors(exc, path)
            return None

    def destinations(self, items: Any, stored: Channel | None) -> list:
        path = _join(self.where, "destinations")
        if not _list_of_mappings(items):
            self.refuse(path, "must be a list of destinations (mappings)")
            return []
        self.problems += _names(items, path)
        existing = {d.name: d for d in stored.destinations.all()} if stored else {}
        return [
            self.destination(item, existing.get(item["name"]), f"{path}[{item['name']}]")
            for item in items
            if isinstance(item.get("name"), str)
        ]

    def destination(self, doc: dict, stored: Destination | None, where: str) -> DestinationPlan:
        self.problems += _unknown_keys(doc, DESTINATION_KEYS, where)
        checks = {
            "route_when": checked_rule,
            "ordering_key": checked_ordering_key,
            "enabled": _boolean,
            **{key: _within(limits) for key, limits in POLICY_LIMITS.items()},
        }
        name = self.value(Destination, "name", doc, _join(where, "name"))
        transport = self.value(Destination, "transport", doc, _join(where, "transport"))
        settings = {
            key: self.value(Destination, key, doc, _join(where, key), checks.get(key))
            for key in DESTINATION_SETTINGS
        }
        config = self.destination_config(doc.get("config", {}), transport, stored, where)
        return DestinationPlan(name, transport, config, settings)

    def destination_config(self, submitted: Any, transport, stored, where: str) -> dict:
        path = _join(where, "config")
        if not isinstance(submitted, dict):
            self.refuse(path, "must be a mapping")
            return {}
        kept = stored.config if stored and stored.transport == transport else None
        public = public_config(Destination(transport=transport, config=kept or {}))
        before = len(self.problems)
        self._unkept_markers(submitted, public, path)
        if transport is None or len(self.problems) > before:
            return {}
        try:
            return checked_config(transport, submitted, kept)
        except ConfigError as exc:
            self._config_errors(exc, path)
        except SealError as exc:
            self.refuse(path, f"a stored secret cannot be opened ({exc}): enter it again")
        return {}

    def samples(self, items: Any) -> list[dict]:
        path = _join(self.where, "samples")
        if not _list_of_mappings(items):
            self.refuse(path, "must be a list of samples (mappings)")
            return []
        self.problems += _names(items, path)
        found = []
        for item in items:
            if not isinstance(item.get("name"), str):
                continue
            where = f"{path}[{item['name']}]"
            self.problems += _unknown_keys(item, SAMPLE_KEYS, where)
            raw, content_type = item.get("raw", ""), item.get("content_type", "")
            accepted = item.get("accepted")
            if not isinstance(raw, str) or not isinstance(content_type, str):
                self.refuse(where, "raw and content_type must be text")
                continue
            if accepted is not None and not isinstance(accepted, dict):
                self.refuse(_join(where, "accepted"), "must be a mapping (an output) or null")
                continue
            try:
                fields = checked_fields(item.get("name"), raw, content_type)
            except SampleRefused as exc:
                self.refuse(_join(where, exc.field), exc.reason)
                continue
            found.append({**fields, "accepted": accepted})
        return found

    def _unkept_markers(self, submitted: dict, stored_public: dict, path: str) -> None:
        for place in sorted(_marker_places(submitted) - _marker_places(stored_public)):
            self.refuse(
                path + place,
                f"is the secret marker {SECRET_MARKER}, but no secret is stored here to keep: "
                "write the secret in the file, or set it in the console first",
            )

    def _config_errors(self, exc: ConfigError, path: str) -> None:
        for error in exc.errors or ({"loc": (), "msg": str(exc)},):
            place = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
            self.refuse(path + place, error["msg"])


def _source_keys(source_type: str) -> tuple[str, ...]:
    """The keys a source type's schemas know (they ignore others, which a file must not have:
    a misspelt key would be dropped without a word)."""
    return tuple(
        f.alias or name
        for schema in SCHEMAS[source_type]
        for name, f in schema.model_fields.items()
    )


def _field_value(model_field: models.Field, value: Any) -> Any:
    text = isinstance(model_field, models.CharField | models.TextField)
    if text and not isinstance(value, str):
        raise ValueError("must be text")
    if isinstance(value, bool) and not isinstance(model_field, models.BooleanField):
        raise ValueError("must be a number, not true/false")
    if isinstance(model_field, models.BooleanField):
        return _boolean(value)
    return model_field.clean(value, None)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _within(limits: dict):
    def check(value):
        if value is None:
            return value
        low, high = limits.get("min_value"), limits.get("max_value")
        if low is not None and value < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high}")
        return value

    return check


def _list_of_mappings(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) for i in items)


def _marker_places(value: Any, where: str = "") -> set[str]:
    """Where a config holds the secret marker (alone, or as a URL's user info)."""
    if isinstance(value, dict):
        return {p for k, v in value.items() for p in _marker_places(v, f"{where}.{k}")}
    if isinstance(value, list):
        return {p for i, v in enumerate(value) for p in _marker_places(v, f"{where}[{i}]")}
    if isinstance(value, str) and (value == SECRET_MARKER or f"{SECRET_MARKER}@" in value):
        return {where}
    return set()


def _planned_document(plan: ChannelPlan) -> dict:
    channel = Channel(**{k: v for k, v in plan.settings.items()})
    destinations = [
        Destination(name=d.name, transport=d.transport, config=d.config, **d.settings)
        for d in plan.destinations
    ]
    return _document(channel, destinations, plan.samples)


def _changes(plan: ChannelPlan, where: str) -> list[Change]:
    after = _comparable(plan.document)
    if plan.channel is None:
        counts = f"{len(plan.destinations)} destination(s), {len(plan.samples)} sample(s)"
        note = f"new channel ({plan.settings['source_type']}, {counts})"
        return [Change(where, ABSENT, after, note)]
    found: list[Change] = []
    named = (f"{where}.destinations", f"{where}.samples")
    _diff(_comparable(channel_document(plan.channel)), after, where, named, found)
    found += _secret_changes(plan, where)
    return [c for c in (_removal(c, plan.channel, where) for c in found) if c is not None]


def _comparable(doc: dict) -> dict:
    """A document as a diff compares it: destinations and samples by name, and a sample's
    message and output as a digest (they hold PHI: a diff never shows them)."""
    return {
        **doc,
        "destinations": {d["name"]: d for d in doc["destinations"]},
        "samples": {
            s["name"]: {
                "content_type": s["content_type"],
                "raw": _digest(s["raw"]),
                "accepted": None if s["accepted"] is None else _digest(s["accepted"]),
            }
            for s in doc["samples"]
        },
    }


def _digest(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return f"{len(text)} characters, sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _diff(before: Any, after: Any, path: str, named: tuple, found: list[Change]) -> None:
    """The changes from ``before`` to ``after``, as deep as both sides are alike; the items of
    the lists at ``named`` (made mappings by name) are shown as ``path[name]``."""
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            place = f"{path}[{key}]" if path in named else _join(path, key)
            if key not in before:
                found.append(Change(place, ABSENT, after[key]))
            elif key not in after:
                found.append(Change(place, before[key], ABSENT))
            else:
                _diff(before[key], after[key], place, named, found)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            _diff(old, new, f"{path}[{index}]", named, found)
    else:
        found.append(Change(path, before, after))


def _secret_changes(plan: ChannelPlan, where: str) -> list[Change]:
    """Secrets the file sets anew: the public form shows each as the same marker."""
    stored = plan.channel
    found = []
    if stored.source_type == plan.settings["source_type"]:
        secrets = source_secrets(stored.source_type)
        changed = secrets_changed(
            fingerprints(stored.source_config, secrets),
            fingerprints(plan.settings["source_config"], secrets),
        )
        found += [f"{where}.source_config.{place}" for place in changed]
    existing = {d.name: d for d in stored.destinations.all()}
    for destination in plan.destinations:
        old = existing.get(destination.name)
        if old is None or old.transport != destination.transport:
            continue
        changed = secrets_changed(
            secret_fingerprints(old.transport, old.config),
            secret_fingerprints(destination.transport, destination.config),
        )
        found += [f"{where}.destinations[{destination.name}].{place}" for place in changed]
    return [Change(p, SECRET_MARKER, SECRET_MARKER, "secret changed") for p in found]


def _removal(change: Change, channel: Channel, where: str) -> Change | None:
    """A destination left out is deleted, or disabled when deliveries point at it (no change
    when it is disabled already)."""
    prefix = f"{where}.destinations["
    if change.kind != "removed" or not change.path.startswith(prefix):
        return change
    destination = channel.destinations.filter(name=change.path[len(prefix) : -1]).first()
    if destination is None:
        return change  # a key inside a destination, not a destination
    if not Delivery.objects.filter(destination=destination).exists():
        return Change(change.path, change.before, ABSENT, "deleted")
    if destination.enabled:
        return Change(change.path, change.before, ABSENT, "disabled (its deliveries keep it)")
    return None


# --- applying ----------------------------------------------------------------------------------


@dataclass
class Applied:
    plan: ChannelPlan
    channel: Channel
    version: ChannelVersion | None  # the version this import published; None if it did not


# One import at a time: a second one waits for the first to commit, then checks its file
# against what the first left (two imports interleaved could each create the same channel).
IMPORT_LOCK = 0x48554249  # any constant shared by every importer


def lock_imports() -> None:
    """Hold the import lock until the current transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_LOCK])


@transaction.atomic
def apply_channel(channel_doc: dict, user, *, publish: bool) -> Applied:
    """Write one channel of a file: checked again here (Refused, nothing written), then its
    settings, destinations and samples; with ``publish`` recorded as a new version (none when
    nothing changed). Without it, an existing channel's settings and destinations become its
    draft (what runs changes when the draft is published); a new channel is created as it is.
    Call it inside one transaction per file."""
    plan = plan_channel(channel_doc)
    if plan.channel is not None and not publish:
        drafts.save_draft(plan.channel, _as_draft(plan, channel_doc), user, "imported from YAML")
        _apply_samples(plan.channel, plan.samples, user)
        return Applied(plan, plan.channel, None)
    channel = plan.channel or Channel()
    for key, value in plan.settings.items():
        setattr(channel, key, value)
    channel.save()
    _apply_destinations(channel, plan.destinations)
    _apply_samples(channel, plan.samples, user)
    return Applied(plan, channel, _published(channel, user) if publish else None)


def _as_draft(plan: ChannelPlan, channel_doc: dict) -> dict:
    """The file's channel as a draft document: its checked settings, and secrets as the file
    writes them (the marker keeps the stored one, as in any draft)."""
    own = {d.name: d.pk for d in plan.channel.destinations.all()}
    written = {d.get("name"): d for d in channel_doc.get("destinations") or []}
    return {
        **{key: value for key, value in plan.settings.items() if key != "source_config"},
        "name": plan.name,
        "source_config": channel_doc.get("source_config") or {},
        "destinations": [
            {
                "id": own.get(item.name),
                "name": item.name,
                "transport": item.transport,
                "config": written[item.name].get("config") or {},
                **item.settings,
            }
            for item in plan.destinations
        ],
    }


def _published(channel: Channel, user) -> ChannelVersion | None:
    """A new version of the channel, or None when the current one already records it."""
    last = channel.current_version()
    version = channel.publish(user=user, note=IMPORT_NOTE)
    return None if last is not None and version.pk == last.pk else version


def _apply_destinations(channel: Channel, planned: list[DestinationPlan]) -> None:
    existing = {d.name: d for d in channel.destinations.select_for_update()}
    for item in planned:
        destination = existing.pop(item.name, None) or Destination(channel=channel, name=item.name)
        destination.transport, destination.config = item.transport, item.config
        for key, value in item.settings.items():
            setattr(destination, key, value)
        destination.save()
    for left_out in existing.values():
        if Delivery.objects.filter(destination=left_out).exists():
            if left_out.enabled:
                left_out.enabled = False
                left_out.save(update_fields=["enabled"])
        else:
            left_out.delete()


def _apply_samples(channel: Channel, planned: list[dict], user) -> None:
    existing = {s.name: s for s in channel.samples.all()}
    for item in planned:
        sample = existing.pop(item["name"], None)
        if sample is None:
            sample = ChannelSample(channel=channel, name=item["name"], created_by=user)
        elif _same_sample(sample, item):
            continue
        if sample.pk is None or sample.raw != item["raw"]:
            sample.raw = item["raw"]
        sample.content_type = item["content_type"]
        if sample.pk is None or sample.accepted != item["accepted"]:
            sample.accepted = item["accepted"]
            sample.accepted_at = timezone.now() if item["accepted"] is not None else None
        sample.save()
    ChannelSample.objects.filter(pk__in=[s.pk for s in existing.values()]).delete()


def _same_sample(sample: ChannelSample, item: dict) -> bool:
    return (
        sample.raw == item["raw"]
        and sample.content_type == item["content_type"]
        and sample.accepted == item["accepted"]
    )
