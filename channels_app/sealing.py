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
from typing import Any, get_args

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from pydantic import BaseModel, SecretStr

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
    """The config keys ``transport`` declares secret, at any depth of its schema (e.g. ``token``
    inside ``auth``); none for a transport this build does not have."""
    from adapters.registry import ConfigError, transport_class

    try:
        schema = transport_class(transport).Config
    except ConfigError:
        return frozenset()
    found: set[str] = set()
    _collect_secrets(schema, found, set())
    return frozenset(found)


def _collect_secrets(model: type[BaseModel], found: set[str], seen: set[type]) -> None:
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("secret") or SecretStr in _types(field.annotation):
            found.add(field.alias or name)
        for kind in _types(field.annotation):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                _collect_secrets(kind, found, seen)


def _types(annotation) -> set:
    """Every type named in an annotation: ``Annotated[A | B, ...]`` gives {A, B}."""
    found = {annotation}
    for arg in get_args(annotation):
        found |= _types(arg)
    return found


def _is_sealed_entry(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"sealed"}


def _is_set(value: Any) -> bool:
    return value not in (None, "")


def _walk(config: Any, secrets: frozenset[str], change) -> Any:
    """A copy of ``config`` with ``change(value)`` applied to every secret, at any depth."""
    if isinstance(config, list):
        return [_walk(item, secrets, change) for item in config]
    if not isinstance(config, dict) or _is_sealed_entry(config):
        return config
    return {
        key: change(value)
        if key in secrets or _is_sealed_entry(value)
        else _walk(value, secrets, change)
        for key, value in config.items()
    }


def seal_config(transport: str, config: dict) -> dict:
    """``config`` with its secrets sealed (when a key is set); sealed entries stay as they are."""
    if not enabled():
        return dict(config)

    def seal_one(value):
        if not _is_set(value) or _is_sealed_entry(value) or not isinstance(value, str):
            return value
        return {"sealed": seal(value.encode()).decode("ascii")}

    return _walk(config, secret_fields(transport), seal_one)


def open_config(transport: str, config: dict) -> dict:
    """``config`` as the transport needs it: every sealed secret opened. Never log the result."""

    def open_one(value):
        if _is_sealed_entry(value):
            return unseal(value["sealed"].encode("ascii")).decode()
        return value

    return _walk(config, secret_fields(transport), open_one)


def public_config(destination) -> dict:
    """The destination's config for forms, the API, exports and logs: a set secret shows as
    ``SECRET_MARKER``, an unset one as None; secrets are write-only."""
    return _walk(
        dict(destination.config or {}),
        secret_fields(destination.transport),
        lambda value: SECRET_MARKER if _is_set(value) else None,
    )


def merge_config(transport: str, old: dict, new: dict) -> dict:
    """``new`` over ``old`` for a write-only form: a secret left blank (or sent back as the
    marker) keeps its stored value, at any depth; any other value replaces it."""
    return _merge(old, new, secret_fields(transport))


def _merge(old: Any, new: Any, secrets: frozenset[str]) -> Any:
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    merged = {}
    for key, value in new.items():
        if key in secrets and value in (None, "", SECRET_MARKER) and _is_set(old.get(key)):
            merged[key] = old[key]
        else:
            merged[key] = _merge(old.get(key), value, secrets)
    return merged
