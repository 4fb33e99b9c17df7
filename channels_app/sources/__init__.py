"""What a channel's source accepts: its ``source_config`` checked against the schema of its source
type when it is saved, so a bad setting is refused with its key named instead of stopping a
listener at its next start. The REST API goes through here (and the console will, when it edits
channels)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.transports.mllp import ListenerLimits, ListenerOptions
from channels_app.pickup import PickupConfig
from channels_app.pipeline import json_source


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
    if json_source.takes_json(source_config) and source_type != "http":
        raise ValueError("custom JSON ('inbound': 'json') comes over HTTP inbound only")
    try:
        json_source.check_source_config(source_config)
    except json_source.BadSourceConfig as exc:
        raise ValueError(str(exc)) from None
