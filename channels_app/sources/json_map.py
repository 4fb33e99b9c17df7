"""Channels that take custom JSON: which ones, their compiled maps, and the process step.

A channel takes custom JSON when its ``source_config`` says ``"inbound": "json"`` and carries the
map as ``json_map`` (see `adapters.codecs.custom_json` for its shape). Without ``inbound`` a channel
takes HL7 v2 and FHIR JSON as before. A map is compiled once per distinct config in a process
(cached by its canonical text), and read once per channel per batch, so per-message work is only
the rules themselves.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from adapters.codecs import custom_json
from adapters.mapping.result import MappingError
from channels_app.models import Channel, Message

INBOUND_JSON = "json"


def takes_json(source_config: Any) -> bool:
    return isinstance(source_config, dict) and source_config.get("inbound") == INBOUND_JSON


class BadSourceConfig(ValueError):
    """A source config the hub cannot take; the message names the key and, in a map, the part.
    ``where`` is that place alone (``json_map.rules[2].source``), ``reason`` what is wrong."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


def check_source_config(source_config: dict) -> None:
    """Refuse a source config whose inbound format or map is wrong: BadSourceConfig naming the
    key (``inbound: ...``) or the map's part (``json_map.rules[2].source: rule #3 ...``)."""
    inbound = source_config.get("inbound")
    if inbound is not None and inbound != INBOUND_JSON:
        raise BadSourceConfig(
            "inbound",
            f"{INBOUND_JSON!r} (custom JSON with a json_map) or left out"
            f" (HL7 v2 and FHIR JSON), not {inbound!r}",
        )
    if inbound == INBOUND_JSON or "json_map" in source_config:
        try:
            channel_map(source_config)
        except custom_json.JsonMapError as exc:
            where = "json_map" + (f".{exc.where}" if exc.where else "")
            raise BadSourceConfig(where, exc.reason) from exc


def channel_map(source_config: dict) -> custom_json.JsonMap:
    """The channel's compiled map; JsonMapError when it has none or it does not compile."""
    if "json_map" not in source_config:
        raise custom_json.JsonMapError("is required for a channel whose inbound is 'json'")
    return _compiled(json.dumps(source_config["json_map"], sort_keys=True))


@lru_cache(maxsize=128)
def _compiled(spec_text: str) -> custom_json.JsonMap:
    return custom_json.compile_json_map(json.loads(spec_text))


class JsonMaps:
    """The maps of the channels in one batch, each read from the database and looked up once (a
    map that does not compile is remembered as its error)."""

    def __init__(self, configs: dict[int, dict] | None = None) -> None:
        """``configs``: source configs already in hand, by channel id (others are read)."""
        self._maps: dict[int, custom_json.JsonMap | custom_json.JsonMapError] = {}
        self._configs: dict[int, dict] = dict(configs or {})

    @classmethod
    def of(cls, channel: Channel) -> JsonMaps:
        """For one channel as given (a draft's unsaved copy too), not as stored."""
        return cls({channel.pk: channel.source_config or {}})

    def source_config(self, channel_id: int) -> dict:
        """The channel's source config, read once per batch."""
        if channel_id not in self._configs:
            found = Channel.objects.filter(pk=channel_id).values_list("source_config", flat=True)
            self._configs[channel_id] = found.first() or {}
        return self._configs[channel_id]

    def profile(self, channel_id: int) -> str | None:
        """The FHIR profile the channel's v2 maps to (``us-core``), else None (the IG's)."""
        return self.source_config(channel_id).get("profile") or None

    def timezone(self, channel_id: int) -> str | None:
        """The IANA zone the channel's sender writes its times in, else None (UTC)."""
        return self.source_config(channel_id).get("timezone") or None

    def get(self, channel_id: int) -> custom_json.JsonMap:
        if channel_id not in self._maps:
            try:
                self._maps[channel_id] = channel_map(self.source_config(channel_id))
            except custom_json.JsonMapError as exc:
                self._maps[channel_id] = exc
        found_map = self._maps[channel_id]
        if isinstance(found_map, custom_json.JsonMapError):
            raise found_map
        return found_map


def convert(message: Message, raw: bytes, maps: JsonMaps) -> None:
    """Map a custom JSON message with its channel's current map: the canonical Bundle and its
    issues, or the error that stopped it (stage, class, path, detail)."""

    def fail(stage: str, exc: Exception, path: str = "") -> None:
        message.__dict__.update(message.error_fields(stage, exc, path))

    try:
        document = custom_json.read(raw)
    except custom_json.NotJson as exc:
        return fail("parse", exc, exc.location)
    try:
        compiled = maps.get(message.channel_id)
    except custom_json.JsonMapError as exc:
        return fail("map", exc, exc.where)
    try:
        result = custom_json.to_bundle(document, compiled)
    except custom_json.MapFailed as exc:
        message.issues = [i.as_dict() for i in exc.issues]
        return fail("map", exc, exc.target)
    except MappingError as exc:  # the validator: the Bundle is not valid FHIR R4 (path named)
        return fail("validate", exc, exc.target)
    except Exception as exc:  # a bug must not stop the batch: record it on the message
        fail("map", exc)
        message.error_detail = f"internal error in the custom JSON map: {exc!r}"
        return
    message.canonical = result.bundle
    message.issues = [i.as_dict() for i in result.issues]
