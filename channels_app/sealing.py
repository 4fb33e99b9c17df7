"""Encryption at rest: message bodies and destination secrets, sealed with keys from the environment.

``HUB_ENCRYPTION_KEYS`` holds comma-separated Fernet keys (``Fernet.generate_key()``): the first
seals, every one of them opens, so a key is rotated by putting a new one first, running
``manage.py rotate_keys`` and then dropping the old one. Unset, nothing is sealed.

Message bodies are sealed with AES-256-GCM under a key derived from each configured key (HKDF),
not as Fernet tokens: on the ingest path a Fernet token (AES-CBC + HMAC + base64, several Python
objects per call) cost about a third of the listener's per-message work, AES-GCM a twentieth
(measured; see the sealing test). A sealed body is ``SEALED_PREFIX`` + a 4-byte key id + a 12-byte
random nonce + ciphertext and tag; the key id picks the key, so opening never tries keys in turn.
Values without the prefix are plaintext written before a key was set and come back as they are,
so turning sealing on needs no migration (``rotate_keys`` seals old rows when it is run).

Destination secrets are the config fields a transport's pydantic schema marks with
``json_schema_extra={"secret": True}`` (or types as ``SecretStr``); ``"secret": "values"`` makes
each value of a dict a secret (HTTP headers: names shown, values not), ``"secret": "userinfo"``
the ``user:password@`` of a URL (the rest of it shown). In ``Destination.config`` a sealed secret
is stored as ``{"sealed": "<Fernet token>"}`` (``MultiFernet``: few and small), a URL with user
info as ``{"sealed": ..., "shown": "https://••••@host/"}``; ``open_config`` gives the transport
its plain config, ``public_config`` shows forms, the API and snapshots a marker instead.
A channel source's secrets (a TLS key's password) are sealed the same way in
``Channel.source_config`` (``seal_secrets``/``open_secrets`` with the source schema's secrets).
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import lru_cache
from typing import Any, get_args

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from pydantic import AnyUrl, BaseModel, SecretStr, TypeAdapter, ValidationError

from adapters.codecs import exact_json

# A NUL first byte: no HL7 v2 or JSON body starts with one.
SEALED_PREFIX = b"\x00hubsealed:1\x00"
_KEY_ID, _NONCE = 4, 12
_HEADER = len(SEALED_PREFIX) + _KEY_ID + _NONCE
SECRET_MARKER = "••••"  # what forms, exports and snapshots show for a secret that is set
_URL = TypeAdapter(AnyUrl)


class SealError(Exception):
    """A sealed value that no configured key opens (a key was dropped before rotate_keys ran)."""


def keys() -> tuple[str, ...]:
    return tuple(getattr(settings, "HUB_ENCRYPTION_KEYS", ()) or ())


def enabled() -> bool:
    return bool(keys())


# --- message bodies ---------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _body_keys(key_list: tuple[str, ...]) -> tuple[tuple[bytes, AESGCM], ...]:
    """(key id, cipher) per configured key, first = the sealing one."""
    found = []
    for key in key_list:
        material = base64.urlsafe_b64decode(key)
        derived = HKDF(SHA256(), length=32, salt=None, info=b"hub message bodies v1").derive(
            material
        )
        found.append((hashlib.sha256(derived).digest()[:_KEY_ID], AESGCM(derived)))
    return tuple(found)


def is_sealed(data: bytes | memoryview | None) -> bool:
    return data is not None and bytes(data[: len(SEALED_PREFIX)]) == SEALED_PREFIX


def seal(data: bytes) -> bytes:
    """``data`` sealed with the first key; unchanged when no key is configured."""
    return seal_many([data])[0]


def seal_many(values: list[bytes]) -> list[bytes]:
    """Each value sealed as `seal` does, with one call for all their random nonces (a system
    call that lets other threads take the GIL: once per ingest batch, not once per message)."""
    key_list = keys()
    if not key_list:
        return values
    key_id, cipher = _body_keys(key_list)[0]
    nonces = os.urandom(_NONCE * len(values))
    sealed = []
    for at, data in zip(range(0, len(nonces), _NONCE), values, strict=True):
        nonce = nonces[at : at + _NONCE]
        sealed.append(SEALED_PREFIX + key_id + nonce + cipher.encrypt(nonce, data, None))
    return sealed


def unseal(data: bytes | memoryview) -> bytes:
    """The plaintext of a sealed value; a value that was never sealed comes back as it is."""
    data = bytes(data)
    if not data.startswith(SEALED_PREFIX):
        return data
    key_list = keys()
    if not key_list:
        raise SealError("this value is sealed but HUB_ENCRYPTION_KEYS is not set")
    start = len(SEALED_PREFIX)
    key_id, nonce = data[start : start + _KEY_ID], data[start + _KEY_ID : _HEADER]
    for candidate, cipher in _body_keys(key_list):
        if candidate == key_id:
            try:
                return cipher.decrypt(nonce, data[_HEADER:], None)
            except InvalidTag:
                raise SealError("this sealed value is damaged or was altered") from None
    raise SealError("no key in HUB_ENCRYPTION_KEYS opens this sealed value")


def sealed_with_current_key(data: bytes | memoryview) -> bool:
    key_list = keys()
    start = len(SEALED_PREFIX)
    return (
        bool(key_list)
        and is_sealed(data)
        and bytes(data[start : start + _KEY_ID]) == _body_keys(key_list)[0][0]
    )


def reseal(data: bytes | memoryview) -> bytes:
    """Sealed with the current first key: plaintext is sealed, other keys' values re-sealed."""
    data = bytes(data)
    if not enabled():
        raise SealError("HUB_ENCRYPTION_KEYS is not set: nothing to seal with")
    if sealed_with_current_key(data):
        return data
    return seal(unseal(data))


# --- short secrets (destination config) --------------------------------------------------------


@lru_cache(maxsize=4)
def _fernet(key_list: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in key_list])


def _opener() -> MultiFernet:
    key_list = keys()
    if not key_list:
        raise SealError("this value is sealed but HUB_ENCRYPTION_KEYS is not set")
    return _fernet(key_list)


def seal_token(text: str) -> str:
    """A short secret sealed as a Fernet token (ASCII), for JSON settings such as a config."""
    return _opener().encrypt(text.encode()).decode("ascii")


def unseal_token(token: bytes | str) -> bytes:
    try:
        return _opener().decrypt(token)
    except InvalidToken:
        raise SealError("no key in HUB_ENCRYPTION_KEYS opens this sealed value") from None


# --- JSON bodies ------------------------------------------------------------------------------


def seal_json(value: Any) -> bytes:
    return seal(exact_json.encode(value))


def unseal_json(data: bytes | memoryview) -> Any:
    return exact_json.loads(unseal(data))


# --- destination and source secrets -----------------------------------------------------------

# How a field is secret: its whole value, each value of its dict, or its URL's user info.
VALUE, VALUES, USERINFO = "value", "values", "userinfo"


@lru_cache(maxsize=64)
def secret_fields(transport: str) -> dict[str, str]:
    """The config keys ``transport`` declares secret, at any depth of its schema (e.g. ``token``
    inside ``auth``), each with how it is secret; none for a transport this build lacks."""
    from adapters.registry import ConfigError, transport_class

    try:
        schema = transport_class(transport).Config
    except ConfigError:
        return {}
    return schema_secrets(schema)


def schema_secrets(*schemas: type[BaseModel]) -> dict[str, str]:
    """The keys these pydantic schemas declare secret, at any depth (a source's schemas too),
    each with how it is secret."""
    found: dict[str, str] = {}
    seen: set[type] = set()
    for schema in schemas:
        _collect_secrets(schema, found, seen)
    return found


def _collect_secrets(model: type[BaseModel], found: dict[str, str], seen: set[type]) -> None:
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        kind = extra.get("secret")
        if kind in (VALUES, USERINFO):
            found[field.alias or name] = kind
        elif kind or SecretStr in _types(field.annotation):
            found[field.alias or name] = VALUE
        for inner in _types(field.annotation):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                _collect_secrets(inner, found, seen)


def _types(annotation) -> set:
    """Every type named in an annotation: ``Annotated[A | B, ...]`` gives {A, B}."""
    found = {annotation}
    for arg in get_args(annotation):
        found |= _types(arg)
    return found


def _is_sealed_entry(value: Any) -> bool:
    return isinstance(value, dict) and "sealed" in value and set(value) <= {"sealed", "shown"}


def _is_set(value: Any) -> bool:
    return value not in (None, "")


def _walk(config: Any, secrets: dict[str, str], change) -> Any:
    """A copy of ``config`` with ``change(value, kind)`` applied to every secret, at any depth
    (to each value of a VALUES dict)."""
    if isinstance(config, list):
        return [_walk(item, secrets, change) for item in config]
    if not isinstance(config, dict) or _is_sealed_entry(config):
        return config
    return {key: _change(key, value, secrets, change) for key, value in config.items()}


def _change(key: str, value: Any, secrets: dict[str, str], change) -> Any:
    kind = secrets.get(key)
    if kind == VALUES and isinstance(value, dict):
        return {name: change(item, VALUE) for name, item in value.items()}
    if kind is not None or _is_sealed_entry(value):
        return change(value, kind or VALUE)
    return _walk(value, secrets, change)


# --- URL user info ---------------------------------------------------------------------------


def userinfo(url: Any) -> str | None:
    """The ``user:password`` of ``url`` as the schema reads it (percent-encoded), or None.
    Read from the schema's own normal form: it accepts ``http:u:p@host`` and other spellings
    that a look for ``://`` would miss, and a password must never be shown for that."""
    normal = _normalized(url)
    return _written_userinfo(normal) if normal else None


def with_userinfo(url: str, info: str | None) -> str:
    """``url`` (written ``scheme://...``) with its user info replaced by ``info`` (removed when
    None)."""
    span = _authority(url)
    if span is None:
        return url
    host = url[span[0] : span[1]].rpartition("@")[2]
    return url[: span[0]] + (f"{info}@" if info else "") + host + url[span[1] :]


def _normalized(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        return str(_URL.validate_python(url))
    except ValidationError:
        return None


def _written_userinfo(url: str) -> str | None:
    span = _authority(url)
    if span is None:
        return None
    authority = url[span[0] : span[1]]
    return authority.rpartition("@")[0] if "@" in authority else None


def _authority(url: str) -> tuple[int, int] | None:
    """Where the authority (user info and host) of a ``scheme://...`` URL starts and ends."""
    if "://" not in url:
        return None
    start = url.index("://") + 3
    ends = [i for i in (url.find(c, start) for c in "/?#\\") if i >= 0]
    return start, min(ends, default=len(url))


def _shown_url(url: str) -> str:
    normal = _normalized(url)
    if normal is None:  # not a URL: where a password would be cannot be told, so none is shown
        return SECRET_MARKER if "@" in url else url
    return with_userinfo(normal, SECRET_MARKER) if _written_userinfo(normal) else url


# --- sealing, opening, showing, merging --------------------------------------------------------


def seal_config(transport: str, config: dict) -> dict:
    """``config`` with its secrets sealed (when a key is set); sealed entries stay as they are."""
    return seal_secrets(config, secret_fields(transport))


def open_config(transport: str, config: dict) -> dict:
    """``config`` as the transport needs it: every sealed secret opened. Never log the result."""
    return open_secrets(config, secret_fields(transport))


def seal_secrets(config: dict, secrets: dict[str, str]) -> dict:
    """``config`` with each of ``secrets`` (as ``schema_secrets`` names them) sealed when a key is
    set; entries already sealed stay byte-identical, so an unrelated edit keeps the ciphertext."""
    if not enabled():
        return dict(config)
    return _walk(config, secrets, _seal_one)


def open_secrets(config: dict, secrets: dict[str, str]) -> dict:
    """``config`` with every sealed entry opened (plaintext comes back as it is). Never log it."""
    return _walk(config, secrets, _open_one)


def _seal_one(value: Any, kind: str) -> Any:
    if not _is_set(value) or _is_sealed_entry(value) or not isinstance(value, str):
        return value
    if _is_marker(value, kind):
        return value  # a draft's "kept as stored": the marker stands for the live secret
    if kind == USERINFO:
        if not userinfo(value):
            return value  # nothing secret in it: stays readable
        return {"sealed": seal_token(value), "shown": _shown_url(value)}
    return {"sealed": seal_token(value)}


def _is_marker(value: str, kind: str) -> bool:
    if kind == USERINFO:
        return _written_userinfo(value) == SECRET_MARKER
    return value == SECRET_MARKER


def _open_one(value: Any, kind: str) -> Any:
    if _is_sealed_entry(value):
        return unseal_token(value["sealed"]).decode()
    return value


def public_config(destination) -> dict:
    """The destination's config for forms, the API, exports and logs: a set secret shows as
    ``SECRET_MARKER``, an unset one as None, a URL's user info as the marker; secrets are
    write-only."""
    return _walk(dict(destination.config or {}), secret_fields(destination.transport), _shown)


def _shown(value: Any, kind: str) -> Any:
    if kind == USERINFO:
        if _is_sealed_entry(value):
            return value.get("shown") or SECRET_MARKER
        return _shown_url(value) if isinstance(value, str) else value
    return SECRET_MARKER if _is_set(value) else None


def merge_config(transport: str, old: dict, new: dict) -> dict:
    """``new`` over ``old`` for a write-only form: a secret left blank (or sent back as the
    marker) keeps its stored value, at any depth; any other value replaces it."""
    return _merge(old, new, secret_fields(transport))


def masked(config: dict, secrets: dict[str, str]) -> dict:
    """``config`` with each of ``secrets`` shown as the marker (set) or None (unset)."""
    return _walk(dict(config or {}), secrets, _shown)


def merged(old: dict, new: dict, secrets: dict[str, str]) -> dict:
    """``merge_config`` for secrets named by the caller (a channel source's, say)."""
    return _merge(old, new, secrets)


def _merge(old: Any, new: Any, secrets: dict[str, str]) -> Any:
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    merged = {}
    for key, value in new.items():
        kind = secrets.get(key)
        if kind == VALUES and isinstance(value, dict):
            stored = old.get(key) if isinstance(old.get(key), dict) else {}
            merged[key] = {
                name: kept
                for name, item in value.items()
                if (kept := _merge_secret(stored.get(name), item)) is not _DROP
            }
        elif kind == USERINFO:
            merged[key] = _merge_userinfo(old.get(key), value)
        elif kind == VALUE:
            if (kept := _merge_secret(old.get(key), value)) is not _DROP:
                merged[key] = kept
        else:
            merged[key] = _merge(old.get(key), value, secrets)
    return merged


_DROP = object()


def _merge_secret(old: Any, new: Any) -> Any:
    if new in (None, "", SECRET_MARKER) and _is_set(old):
        return old
    if new == SECRET_MARKER:
        return _DROP  # a marker with nothing stored behind it is not a secret to keep
    return new


def _merge_userinfo(old: Any, new: Any) -> Any:
    """A URL whose user info is the marker keeps the stored user info (the rest may change)."""
    if not isinstance(new, str) or _written_userinfo(new) != SECRET_MARKER:
        return new
    if isinstance(old, str) and _written_userinfo(old) == SECRET_MARKER:
        return new  # both stand for the live secret (a draft edited again)
    stored = unseal_token(old["sealed"]).decode() if _is_sealed_entry(old) else old
    return with_userinfo(new, userinfo(stored))


def secret_values(transport: str, config: dict) -> dict[str, str]:
    """Every set secret of ``config``, opened, by its dotted place (``auth.token``,
    ``headers.X-Api-Key``, ``base_url`` for its user info): what an audit compares to say
    which secrets changed, never what it writes."""
    return opened_secret_values(config, secret_fields(transport))


def opened_secret_values(config: dict, secrets: dict[str, str]) -> dict[str, str]:
    """``secret_values`` for secrets named by the caller (a channel source's, say)."""
    found: dict[str, str] = {}
    _secret_leaves(open_secrets(config, secrets), secrets, "", found)
    return found


def _secret_leaves(config: Any, secrets: dict[str, str], where: str, found: dict) -> None:
    if not isinstance(config, dict | list):
        return
    items = enumerate(config) if isinstance(config, list) else config.items()
    for key, value in items:
        place = f"{where}{key}"
        kind = secrets.get(key) if isinstance(key, str) else None
        if kind == VALUES and isinstance(value, dict):
            found.update({f"{place}.{name}": v for name, v in value.items() if _is_set(v)})
        elif kind == USERINFO:
            if info := userinfo(value):
                found[place] = info
        elif kind == VALUE:
            if _is_set(value):
                found[place] = value
        else:
            _secret_leaves(value, secrets, f"{place}.", found)
