"""Channel sources, one module each, all storing through `channels_app.pipeline.ingest`:

- ``mllp``: the asyncio MLLP listener (limits, TLS, ACKs after the commit);
- ``file``: file pickup (a polled directory, batch files split, moved after the commit);
- ``http``: HTTP inbound (HL7 v2, FHIR JSON, custom JSON), behind `console/api/inbound.py`;
- ``json_map``: channels that take custom JSON, their compiled maps and the process step;
- ``supervisor`` + ``heartbeat``: what `run_listeners` runs, following the configuration, and
  what it reports; ``status``: what the console reads of it.

Here: what a channel's source accepts, its ``source_config`` checked against the schema of its
source type when it is saved, so a bad setting is refused with its key named instead of stopping
a listener at its next start. The console's source form and the REST API both go through
``checked_source_config``; secrets the schemas declare (a TLS key's password) are write-only and
sealed at rest: whatever runs the source reads ``opened_source_config``."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.registry import ConfigError
from adapters.transports.mllp import ListenerLimits, ListenerOptions
from channels_app.sealing import (
    SealError,
    masked,
    merged,
    open_secrets,
    schema_secrets,
    seal_secrets,
)
from channels_app.sources import json_map
from channels_app.sources.file import PickupConfig


class MLLPAddress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    host: str | None = Field(
        None, description="Address to listen on; blank listens on the hub's LISTEN_HOST."
    )
    port: int = Field(ge=1, le=65535, description="TCP port senders connect to.")


class HTTPInbound(BaseModel):
    """HTTP inbound takes HL7 v2 and FHIR JSON as they come, or custom JSON through a map."""

    model_config = ConfigDict(extra="ignore")

    inbound: Literal["json"] | None = Field(
        None,
        title="Inbound format",
        description="Blank: HL7 v2 and FHIR JSON. json: custom JSON, converted by the map below.",
    )
    json_map: dict | None = Field(
        None,
        title="JSON map",
        description="The custom JSON map (resources, key, rules), for inbound json.",
    )


class MappingOptions(BaseModel):
    """How the channel's HL7 v2 becomes FHIR, whatever the source."""

    model_config = ConfigDict(extra="ignore")

    profile: Literal["us-core"] | None = Field(
        None,
        title="FHIR profile",
        description="Blank: the HL7 v2-to-FHIR IG's maps. us-core: also US Core's race and"
        " ethnicity extensions (PID-10, PID-22) and the US Core Patient profile.",
    )
    timezone: str | None = Field(
        None,
        title="Sender's time zone",
        description="An IANA zone (America/New_York) for times the sender writes without an"
        " offset when MSH-7 has none either, daylight saving included. Blank: UTC.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone name (e.g. America/New_York)") from None
        return value


SCHEMAS: dict[str, tuple[type[BaseModel], ...]] = {
    "mllp": (MLLPAddress, ListenerLimits, ListenerOptions, MappingOptions),
    "file": (PickupConfig, MappingOptions),
    "http": (HTTPInbound, MappingOptions),
}


@lru_cache(maxsize=8)
def source_secrets(source_type: str) -> dict[str, str]:
    return schema_secrets(*SCHEMAS.get(source_type, ()))


def sealed_source_config(source_type: str, config: dict) -> dict:
    """``config`` as stored: new plaintext secrets sealed, sealed ones left byte-identical."""
    return seal_secrets(config or {}, source_secrets(source_type))


def opened_source_config(source_type: str, config: dict) -> dict:
    """``config`` as the source runs with it: its sealed secrets opened. Never log it."""
    return open_secrets(config or {}, source_secrets(source_type))


def source_secret_fingerprints(channel) -> dict[str, str]:
    """Digests of the source's secrets by place (``source_config.tls.key_password``), for the
    audit to say which changed (see channels_app.destinations.fingerprints)."""
    from channels_app.destinations import fingerprints

    found = fingerprints(channel.source_config, source_secrets(channel.source_type))
    return {f"source_config.{place}": digest for place, digest in found.items()}


def public_source_config(channel) -> dict:
    """The channel's source_config for forms, the API and the audit: secrets as the marker."""
    return masked(channel.source_config or {}, source_secrets(channel.source_type))


def public_snapshot(snapshot: dict) -> dict:
    """A version's snapshot for the API and the audit: it keeps the source's secrets sealed (a
    rollback restores them), shown here as the marker, not as their ciphertext."""
    if "source_config" not in snapshot:
        return snapshot
    secrets = source_secrets(snapshot.get("source_type") or "")
    return {**snapshot, "source_config": masked(snapshot["source_config"] or {}, secrets)}


def checked_source_config(
    source_type: str, submitted, stored: dict | None = None, *, channel_id: int | None = None
) -> dict:
    """``submitted`` made ready to store: merged over ``stored`` (a secret left blank or sent back
    as the marker keeps its stored value), checked against the source type's schemas, and for a
    listener, its address free among the other channels; returned with its secrets sealed (those
    kept from ``stored`` unchanged, so the listener is not restarted for an unrelated edit).
    ConfigError's ``errors`` name each key."""
    if not isinstance(submitted, dict):
        raise ConfigError("must be a JSON object", errors=({"loc": (), "msg": "not an object"},))
    secrets = source_secrets(source_type)
    config = merged(stored, submitted, secrets) if stored is not None else submitted
    errors = _opened_errors(source_type, config)
    moved = _claim(source_type, config) != _claim(source_type, stored or {})
    if not errors and (channel_id is None or moved):
        errors = _claim_taken(source_type, config, channel_id)
    if errors:
        raise ConfigError(_text(errors), errors=tuple(errors))
    return sealed_source_config(source_type, config)


def _opened_errors(source_type: str, config: dict) -> list[dict]:
    try:
        return source_errors(source_type, opened_source_config(source_type, config))
    except SealError as exc:  # a kept secret no configured key opens: it must be entered again
        return [{"loc": (), "msg": str(exc)}]


def check_source_config(source_type: str, source_config: dict) -> None:
    """ValueError naming each key that is wrong (``port: Input should be ...``)."""
    errors = source_errors(source_type, source_config)
    if errors:
        raise ValueError(_text(errors))


def _text(errors: list[dict]) -> str:
    """``port: Input should be ...; json_map.rules[2] ...`` (a map's error names its own part)."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"] for e in errors
    )


def source_errors(source_type: str, source_config: dict) -> list[dict]:
    """Each problem as ``{"loc": (key, ...), "msg": ...}``; never the value (it may be secret)."""
    errors = []
    for schema in SCHEMAS.get(source_type, ()):
        try:
            schema.model_validate(source_config)
        except ValidationError as exc:
            errors += [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()]
    if not errors and source_type == "mllp":
        errors += _tls_errors(source_config.get("tls"))
    if json_map.takes_json(source_config) and source_type != "http":
        errors.append({"loc": ("inbound",), "msg": "custom JSON comes over HTTP inbound only"})
    try:
        json_map.check_source_config(source_config)
    except json_map.BadSourceConfig as exc:
        # ("json_map", "rules[2].source"): the form shows it on its json_map field
        errors.append({"loc": tuple(exc.where.split(".", 1)), "msg": exc.reason})
    return errors


def _tls_errors(tls: dict | None) -> list[dict]:
    """What a TLS listener needs to start (the files themselves are read where it runs)."""
    if not tls:
        return []
    needed = [("cert_file", "a TLS listener needs its certificate")]
    needed.append(("key_file", "a TLS listener needs its private key"))
    if tls.get("require_client_cert"):
        needed.append(("ca_file", "client certificates are checked against this CA"))
    return [{"loc": ("tls", key), "msg": msg} for key, msg in needed if not tls.get(key)]


# What a source holds alone: a listener's address, a pickup's directory (named by its key).
CLAIMS = {"mllp": "port", "file": "directory"}


def _claim(source_type: str, config: dict) -> tuple | None:
    if source_type == "mllp":
        return (config.get("host") or settings.HUB["LISTEN_HOST"], config.get("port"))
    if source_type == "file":
        return (os.path.normpath(str(config.get("directory") or "")),)
    return None


def _claim_taken(source_type: str, config: dict, channel_id: int | None) -> list[dict]:
    """The error when another channel (not archived) holds this source's address or directory."""
    from channels_app.models import Channel

    claim = _claim(source_type, config)
    if claim is None:
        return []
    key = CLAIMS[source_type]
    others = Channel.objects.filter(
        source_type=source_type,
        archived_at__isnull=True,
        **{f"source_config__{key}": config.get(key)},
    ).exclude(pk=channel_id)
    for other in others.only("name", "source_type", "source_config"):
        if _claim(source_type, other.source_config) == claim:
            return [{"loc": (key,), "msg": f"channel “{other.name}” already uses this {key}"}]
    return []
