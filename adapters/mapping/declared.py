"""What the built-in maps say they do: per segment map, the (v2 field, FHIR path, transform)
rows it writes, declared on the map function itself::

    @fields("PID", "Patient",
            ("PID-3", "Patient.identifier", "CX -> Identifier"), ...)
    def map_patient(ctx, pid, pd1=None): ...

and, per message map, the segments it reads (``@handles(..., segments="PID PV1 OBX")``). A
segment that one map turns into one resource and another map into another (OBR: ServiceRequest
in an order, DiagnosticReport in a result) is declared once per resource, and a message map
names the one it makes as ``OBR:ServiceRequest`` (a bare ``OBR`` takes every one). The
Mapping page shows these tables; a corpus test converts real messages and checks that every
row's FHIR path holds a value whenever its v2 field is present, so a table cannot drift from
the code without a failing test. The decorator returns the function untouched: no cost per
message.

A row with a ``when`` (its condition) is checked less strictly: at least once over the corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from adapters.mapping import registry

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class FieldRow:
    v2: str  # "PID-3", "PID-5.1" (a component)
    fhir: str  # a FHIRPath on the resource: "Patient.identifier"
    transform: str  # how the value is turned into the FHIR element
    when: str = ""  # the condition under which the map writes it, if any


@dataclass(frozen=True, slots=True)
class SegmentMap:
    segment: str
    resource: str
    function: str
    rows: tuple[FieldRow, ...]


_SEGMENTS: dict[str, list[SegmentMap]] = {}  # per segment, one per resource it becomes


def fields(segment: str, resource: str, *rows: tuple[str, ...]) -> Callable[[F], F]:
    """Declare the rows a segment map writes (each ``(v2, fhir, transform[, when])``)."""

    def declare(fn: F) -> F:
        maps = _SEGMENTS.setdefault(segment, [])
        if any(m.resource == resource for m in maps):
            raise ValueError(f"{segment} -> {resource} already declared")
        name = f"{fn.__module__}.{fn.__qualname__}"
        maps.append(SegmentMap(segment, resource, name, tuple(FieldRow(*r) for r in rows)))
        return fn

    return declare


def all_maps() -> list[SegmentMap]:
    registry.load()
    return [m for maps in _SEGMENTS.values() for m in maps]


@dataclass(frozen=True, slots=True)
class MessageTable:
    message_type: str  # "ADT^A01"
    handler: str
    segments: tuple[str, ...]  # every segment the message map reads, in its order
    maps: tuple[SegmentMap, ...]  # those with declared rows

    @property
    def undeclared(self) -> tuple[str, ...]:
        declared = {m.segment for m in self.maps}
        return tuple(s for s in self.segments if s not in declared)


def _maps_of(token: str) -> list[SegmentMap]:
    """``OBR`` -> every declaration of OBR; ``OBR:ServiceRequest`` -> that one."""
    segment, _, resource = token.partition(":")
    return [m for m in _SEGMENTS.get(segment, ()) if not resource or m.resource == resource]


def table(message_type: str) -> MessageTable | None:
    """The declared map of ``CODE^EVENT`` (None when no built-in map takes it)."""
    code, _, event = message_type.upper().partition("^")
    handler = registry.lookup(code, event.partition("^")[0] or "*")
    if handler is None:
        return None
    tokens = registry.segments_of(handler)
    segments = tuple(dict.fromkeys(t.partition(":")[0] for t in tokens))
    maps = tuple(m for t in tokens for m in _maps_of(t))
    name = f"{handler.__module__}.{handler.__qualname__}"
    return MessageTable(f"{code}^{event.partition('^')[0]}", name, segments, maps)
