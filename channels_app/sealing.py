"""Encryption at rest: message bodies and destination secrets, sealed with keys from the environment.

``HUB_ENCRYPTION_KEYS`` holds comma-separated Fernet keys: the first seals, every one of them
opens (``MultiFernet``), so a key is rotated by putting a new one first, running
``manage.py rotate_keys`` and then dropping the old one. Unset, nothing is sealed.

A sealed value is ASCII: ``SEALED_PREFIX`` followed by the Fernet token. Values without the prefix
are plaintext written before a key was set and are returned as they are, so turning sealing on
needs no migration of old rows (``rotate_keys`` seals them when it is run).

Destination secrets are the config fields a transport's pydantic schema marks with
``json_schema_extra={"secret": True}`` (or types as ``SecretStr``). In ``Destination.config`` a
sealed secret is stored as ``{"sealed": "<sealed value>"}``; ``open_config`` gives the transport
its plain config, ``public_config`` shows forms, the API and snapshots a marker instead.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from pydantic import SecretStr

SEALED_PREFIX = b"hubsealed:1:"
SECRET_MARKER = "••••"  # what forms, exports and snapshots show for a secret that is set


class SealError(Exception):
    """A sealed value that no configured key opens (a key was dropped before rotate_keys ran)."""


def keys() -> tuple[str, ...]:
    return tuple(getattr(settings, "HUB_ENCRYPTION_KEYS", ()) or ())


def enabled() -> bool:
    return bool(keys())


@lru_cache(maxsize=4)
def _fernet(key_list: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in key_list])


def _current() -> MultiFernet | None:
    key_list = keys()
    return _fernet(key_list) if key_list else None


def is_sealed(data: bytes | memoryview | None) -> bool:
    return data is not None and bytes(data[: len(SEALED_PREFIX)]) == SEALED_PREFIX


def seal(data: bytes) -> bytes:
    """``data`` sealed with the first key; unchanged when no key is configured."""
    fernet = _current()
    if fernet is None:
        return data
    return SEALED_PREFIX + fernet.encrypt(data)


def unseal(data: bytes | memoryview) -> bytes:
    """The plaintext of a sealed value; a value that was never sealed comes back as it is."""
    data = bytes(data)
    if not data.startswith(SEALED_PREFIX):
        return data
    fernet = _current()
    if fernet is None:
        raise SealError("this value is sealed but HUB_ENCRYPTION_KEYS is not set")
    try:
        return fernet.decrypt(data[len(SEALED_PREFIX) :])
    except InvalidToken:
        raise SealError("no key in HUB_ENCRYPTION_KEYS opens this sealed value") from None


def reseal(data: bytes | memoryview) -> bytes:
    """Sealed with the current first key (plaintext gets sealed; already current stays valid)."""
    data = bytes(data)
    fernet = _current()
    if fernet is None:
        raise SealError("HUB_ENCRYPTION_KEYS is not set: nothing to seal with")
    if not data.startswith(SEALED_PREFIX):
        return seal(data)
    try:
        return SEALED_PREFIX + fernet.rotate(data[len(SEALED_PREFIX) :])
    except InvalidToken:
        raise SealError("no key in HUB_ENCRYPTION_KEYS opens this sealed value") from None


# --- JSON bodies ------------------------------------------------------------------------------


def seal_json(value: Any) -> bytes:
    return seal(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def unseal_json(data: bytes | memoryview) -> Any:
    return json.loads(unseal(data))


# --- destination secrets ----------------------------------------------------------------------


@lru_cache(maxsize=64)
def secret_fields(transport: str) -> frozenset[str]:
    """The config keys ``transport`` declares secret; none for a transport this build lacks."""
    from adapters.registry import ConfigError, transport_class

    try:
        schema = transport_class(transport).Config
    except ConfigError:
        return frozenset()
    found = set()
    for name, field in schema.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("secret") or _is_secret_type(field.annotation):
            found.add(field.alias or name)
    return frozenset(found)


def _is_secret_type(annotation) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())


def _is_sealed_entry(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"sealed"}


def seal_config(transport: str, config: dict) -> dict:
    """``config`` with its secrets sealed (when a key is set); sealed entries are kept as they are."""
    if not enabled():
        return dict(config)
    sealed = dict(config)
    for name in secret_fields(transport):
        value = sealed.get(name)
        if value in (None, "") or _is_sealed_entry(value):
            continue
        sealed[name] = {"sealed": seal(str(value).encode()).decode("ascii")}
    return sealed


def open_config(transport: str, config: dict) -> dict:
    """``config`` as the transport needs it: every sealed secret opened. Never log the result."""
    opened = dict(config)
    for name, value in config.items():
        if _is_sealed_entry(value):
            opened[name] = unseal(value["sealed"].encode("ascii")).decode()
    return opened


def public_config(destination) -> dict:
    """The destination's config for forms, the API, exports and logs: a set secret shows as
    ``SECRET_MARKER``, an unset one as None; secrets are write-only."""
    config = dict(destination.config or {})
    secrets = secret_fields(destination.transport)
    for name, value in config.items():
        if name in secrets or _is_sealed_entry(value):
            config[name] = SECRET_MARKER if value not in (None, "") else None
    return config


def merge_config(transport: str, old: dict, new: dict) -> dict:
    """``new`` over ``old`` for a write-only form: a secret left blank (or sent back as the
    marker) keeps its stored value; any other secret value replaces it."""
    merged = dict(new)
    for name in secret_fields(transport):
        if merged.get(name) in (None, "", SECRET_MARKER) and old.get(name) not in (None, ""):
            merged[name] = old[name]
    return merged
