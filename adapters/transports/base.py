"""The transport protocol every destination connector implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from adapters.base import AdapterError


class TransportError(AdapterError):
    """A send that did not succeed; ``permanent`` says whether a retry can help."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status_code: int | None = None,
        response: str = "",
        issues: tuple[dict, ...] = (),
    ) -> None:
        super().__init__(message, permanent=permanent)
        self.status_code = status_code
        self.response = response
        self.issues = issues


@dataclass(frozen=True, slots=True)
class SendResult:
    status_code: int | None
    summary: str  # what the destination answered, short enough to store on every attempt
    request: str = ""  # what was sent, e.g. "POST https://fhir/ (Bundle, 3 entries, 2.1 kB)"
    issues: tuple[dict, ...] = ()  # detail the destination gave, e.g. OperationOutcome issues


@dataclass(frozen=True, slots=True)
class Payload:
    """What a destination receives: the bytes, their media type and a stable idempotency key."""

    body: bytes
    content_type: str
    idempotency_key: str
    name: str  # a file-system-safe name for the payload (file destinations)
    source: bytes | None = None  # the message as received, for transports with needs_source
    message_id: int = 0


@dataclass(frozen=True, slots=True)
class Encoded:
    """What a destination would receive for a payload, without sending it: the bytes, their media
    type and where they would go (a file name, an origin, a peer)."""

    body: bytes
    content_type: str
    target: str = ""


@runtime_checkable
class Transport(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    # True when the transport forwards the message as received (Payload.source), e.g. MLLP.
    needs_source: ClassVar[bool]

    def send(self, payload: Payload, *, timeout: float) -> SendResult: ...

    def encode(self, payload: Payload) -> Encoded: ...
