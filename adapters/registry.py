"""Transports registered by name; each declares its config schema (pydantic)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from adapters.base import AdapterError

_transports: dict[str, type] = {}


def register_transport(name: str):
    def decorate(cls):
        cls.name = name
        _transports[name] = cls
        return cls

    return decorate


class ConfigError(AdapterError):
    """A config the transport's schema refuses. ``errors`` says where each problem is: pydantic's
    ``loc`` (e.g. ``("auth", "bearer", "token")``) and ``msg``, never the value (it may be a
    secret); forms show each one next to the field it names."""

    def __init__(self, message: str, *, errors: tuple[dict, ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


def transport_class(name: str) -> type:
    _load_builtins()
    try:
        return _transports[name]
    except KeyError:
        raise ConfigError(f"unknown transport {name!r}; known: {', '.join(sorted(_transports))}")


def transport_names() -> list[str]:
    """Every registered transport, by name."""
    _load_builtins()
    return sorted(_transports)


def build_transport(name: str, config: dict[str, Any]):
    cls = transport_class(name)
    try:
        return cls(cls.Config.model_validate(config))
    except ValidationError as exc:
        errors = tuple({"loc": tuple(e["loc"]), "msg": e["msg"]} for e in exc.errors())
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise ConfigError(f"{name} destination config is invalid: {problems}", errors=errors)


def _load_builtins() -> None:
    from adapters.transports import (  # noqa: F401  (each registers itself on import)
        fhir_rest,
        file,
        mllp_sender,
        webhook,
    )
