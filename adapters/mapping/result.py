"""What a conversion returns: the Bundle, and every problem met on the way, each in its place.

A problem names the v2 location it came from (``PID-7``), the value found there, the FHIR path it
was meant for (``Patient.birthDate``), why it failed, and whose fault it is: ``sender`` when the
message carries data the standard does not allow, ``map`` when our map cannot express valid data.
Non-fatal problems travel as `ConversionIssue` in the result (partial success is explicit); a
problem the map cannot work around raises `MappingError` with the same attributes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from adapters.base import AdapterError

Origin = Literal["sender", "map"]
Severity = Literal["error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class ConversionIssue:
    segment: str
    field: str  # a v2 path such as "PID-7" or "OBX(3)-5"
    value: str
    target: str  # a FHIR path such as "Patient.birthDate"
    reason: str
    origin: Origin = "sender"
    severity: Severity = "warning"

    def __str__(self) -> str:
        where = self.field or self.segment or "message"
        shown = f" {self.value!r}" if self.value else ""
        return f"{where}{shown} -> {self.target}: {self.reason} ({self.origin})"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class MappingError(AdapterError):
    """A message the map cannot turn into a valid Bundle. Retrying the same input cannot help."""

    permanent = True

    def __init__(
        self,
        reason: str,
        *,
        segment: str = "",
        field: str = "",
        value: str = "",
        target: str = "",
        origin: Origin = "sender",
        severity: Severity = "error",
    ) -> None:
        self.segment = segment
        self.field = field
        self.value = value
        self.target = target
        self.bare_reason = reason
        self.origin = origin
        self.severity = severity
        where = field or segment
        text = reason
        if where or target:
            shown = f" {value!r}" if value else ""
            text = f"{where}{shown} -> {target or '?'}: {reason} ({origin})"
        super().__init__(text, permanent=True)

    @property
    def reason(self) -> str:
        return self.bare_reason

    def as_issue(self) -> ConversionIssue:
        return ConversionIssue(
            self.segment,
            self.field,
            self.value,
            self.target,
            self.bare_reason,
            self.origin,
            self.severity,
        )


class UnsupportedMessageType(MappingError):
    """The message parses, but no built-in map exists for its type (MFN^M02, ORF, ...)."""

    def __init__(self, message_type: str, *, supported: list[str] | None = None) -> None:
        self.message_type = message_type
        hint = f"; mapped: {', '.join(supported)}" if supported else ""
        super().__init__(
            f"no built-in map for message type {message_type or '(empty)'}{hint}",
            segment="MSH",
            field="MSH-9",
            value=message_type,
            target="Bundle",
            origin="map",
        )


@dataclass(slots=True)
class ConversionResult:
    bundle: dict
    issues: list[ConversionIssue] = field(default_factory=list)
    resource_types: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was lost: no issue of severity error."""
        return not any(i.severity == "error" for i in self.issues)

    def resources(self, resource_type: str | None = None) -> list[dict]:
        return [
            e["resource"]
            for e in self.bundle.get("entry", ())
            if resource_type is None or e["resource"]["resourceType"] == resource_type
        ]
