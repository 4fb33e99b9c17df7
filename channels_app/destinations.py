"""What a destination accepts: a config its transport's schema validates, a delivery policy within
bounds. The console's destination form and the REST API both go through here, so a config one of
them refuses the other refuses too.
"""

from __future__ import annotations

import hashlib
from typing import Any

from adapters.codecs import hl7v2
from adapters.registry import ConfigError, build_transport
from channels_app.sealing import (
    SealError,
    merge_config,
    open_config,
    opened_secret_values,
    seal_config,
    secret_fields,
)

# The delivery policy's bounds (Destination fields), for the API serializer and the form alike.
POLICY_LIMITS: dict[str, dict[str, float]] = {
    "timeout_s": {"min_value": 0.1, "max_value": 3600},
    "backoff_base_s": {"min_value": 0.05},
    "backoff_max_s": {"min_value": 0.05},
    "breaker_error_rate": {"min_value": 0.01, "max_value": 1.0},
    "rate_limit_per_s": {"min_value": 0.01},
}


def checked_config(transport: str, submitted: Any, stored: dict | None = None) -> dict:
    """``submitted`` made ready to store: merged over ``stored`` (secrets are write-only, so one
    left blank or sent back as the marker keeps its stored value), validated by building the
    transport, and sealed. Raises ConfigError, whose ``errors`` name each field that is wrong."""
    if not isinstance(submitted, dict):
        raise ConfigError("must be a JSON object", errors=({"loc": (), "msg": "not an object"},))
    config = merge_config(transport, stored or {}, submitted) if stored is not None else submitted
    build_transport(transport, open_config(transport, config))
    return seal_config(transport, config)


def secret_fingerprints(transport: str, config: dict | None) -> dict[str, str]:
    """A digest of each set secret by its place in the config (``config.auth.token``), taken
    before and after a save to say which secrets it changed: the public form shows every secret
    as the same marker, so a change of a secret alone would otherwise leave no trace. Digests,
    not values, so nothing secret is held longer than this call; none when they cannot be
    opened (a key dropped), so every secret after counts as changed."""
    return {
        f"config.{place}": digest
        for place, digest in fingerprints(config, secret_fields(transport)).items()
    }


def fingerprints(config: dict | None, secrets: dict[str, str]) -> dict[str, str]:
    """``secret_fingerprints`` for secrets named by the caller (a channel source's), by their
    place in ``config`` itself."""
    try:
        values = opened_secret_values(config or {}, secrets)
    except SealError:
        return {}
    return {place: hashlib.sha256(value.encode()).hexdigest() for place, value in values.items()}


def secrets_changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The places whose secret was set, changed or removed between two fingerprints."""
    return sorted(
        place for place in before.keys() | after.keys() if before.get(place) != after.get(place)
    )


def checked_ordering_key(text: str) -> str:
    """An ordering key is blank (not ordered) or an HL7 v2 path such as ``PID-3.1``; ValueError
    says what is wrong, so a typo is refused on save instead of silently leaving lanes off."""
    text = (text or "").strip()
    if text:
        hl7v2.Path.parse(text)  # its ValueError names the text and shows good examples
    return text
