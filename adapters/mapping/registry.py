"""Message maps by message code and trigger event. Adding a message type is one module under
``messages/`` with one decorator::

    @handles("ADT", "A01", "A04", segments="PID PV1")
    def adt(ctx: Context) -> None: ...

``segments`` names what the map reads, for the Mapping page (see `adapters.mapping.declared`).
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.mapping.context import Context

Handler = Callable[[Context], None]

_HANDLERS: dict[tuple[str, str], Handler] = {}
_SEGMENTS: dict[Handler, tuple[str, ...]] = {}


def handles(code: str, *events: str, segments: str = "") -> Callable[[Handler], Handler]:
    """Register a message map for ``code`` with each trigger event (``"*"`` = any event);
    ``segments`` lists the segments it maps, space-separated."""

    def register(fn: Handler) -> Handler:
        if segments:
            _SEGMENTS[fn] = tuple(segments.split())
        for event in events or ("*",):
            key = (code.upper(), event.upper())
            if key in _HANDLERS and _HANDLERS[key] is not fn:
                raise ValueError(f"{code}^{event} already has a map: {_HANDLERS[key].__name__}")
            _HANDLERS[key] = fn
        return fn

    return register


def lookup(code: str, event: str) -> Handler | None:
    load()
    code, event = code.strip().upper(), event.strip().upper()
    return _HANDLERS.get((code, event)) or _HANDLERS.get((code, "*"))


def supported() -> list[str]:
    """Every mapped ``CODE^EVENT`` (``CODE`` alone when any event is mapped)."""
    load()
    return sorted(f"{c}^{e}" if e != "*" else c for c, e in _HANDLERS)


def supported_events(code: str) -> list[str]:
    """The trigger events mapped for a message code ([] when the code has no map at all)."""
    load()
    code = code.strip().upper()
    return sorted(e for c, e in _HANDLERS if c == code)


def segments_of(handler: Handler) -> tuple[str, ...]:
    """The segments a message map declared it reads."""
    return _SEGMENTS.get(handler, ())


def supported_codes() -> list[str]:
    load()
    return sorted({c for c, _ in _HANDLERS})


_loaded = False


def load() -> None:
    """Import every module under ``messages/`` once so their decorators run."""
    global _loaded
    if _loaded:
        return
    import importlib
    import pkgutil

    from adapters.mapping import messages

    for info in pkgutil.iter_modules(messages.__path__):
        importlib.import_module(f"{messages.__name__}.{info.name}")
    _loaded = True
