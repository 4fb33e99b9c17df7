"""Channel sources, one module each, all storing through `channels_app.pipeline.ingest`:

- ``mllp``: the asyncio MLLP listener (limits, TLS, ACKs after the commit);
- ``file``: file pickup (a polled directory, batch files split, moved after the commit);
- ``http``: HTTP inbound (HL7 v2, FHIR JSON, custom JSON), behind `console/api/inbound.py`;
- ``json_map``: channels that take custom JSON, their compiled maps and the process step;
- ``supervisor`` + ``heartbeat``: what `run_listeners` runs, following the configuration, and
  what it reports; ``status``: what the console reads of it.

Here: what a channel's source accepts, its ``source_config`` checked against the schema of its
source type when it is saved, so a bad setting is refused with its key named instead of stopping
a listener at its next start. The REST API goes through here (and the console will, when it edits
channels)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.transports.mllp import ListenerLimits, ListenerOptions
from channels_app.sources import json_map
from channels_app.sources.file import PickupConfig


class MLLPAddress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    host: str | None = None
    port: int = Field(ge=1, le=65535)


SCHEMAS: dict[str, tuple[type[BaseModel], ...]] = {
    "mllp": (MLLPAddress, ListenerLimits, ListenerOptions),
    "file": (PickupConfig,),
    "http": (),
}


def check_source_config(source_type: str, source_config: dict) -> None:
    """ValueError naming each key that is wrong (``port: Input should be ...``)."""
    for schema in SCHEMAS.get(source_type, ()):
        try:
            schema.model_validate(source_config)
        except ValidationError as exc:
            raise ValueError(
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            ) from None
    if json_map.takes_json(source_config) and source_type != "http":
        raise ValueError("custom JSON ('inbound': 'json') comes over HTTP inbound only")
    try:
        json_map.check_source_config(source_config)
    except json_map.BadSourceConfig as exc:
        raise ValueError(str(exc)) from None
