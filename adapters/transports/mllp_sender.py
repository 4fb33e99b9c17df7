"""MLLP destination: forward the HL7 v2 message as received and wait for its ACK.

Or, with ``payload: rebuilt``, send HL7 v2.5.1 built back from the canonical Bundle
(`adapters.mapping.fhir_to_v2`, analyst field rules included) as ``message_type``: a FHIR or JSON
sender can then feed a v2 receiver. The rebuilt message keeps the source's MSH-10 (or
``HUB<message id>`` when the source is not v2), so a retry carries the same control id.

Connections are kept and reused: a small pool (``connections``, one message in flight on each),
opened on demand, checked before reuse (a connection the peer closed, or one holding bytes nobody
asked for, is dropped) and closed after ``idle_timeout_s`` unused. Optional TLS (stdlib ``ssl``).

What the answer means (``MSA-1``; ``MSA-2`` must be the ``MSH-10`` sent):

| answer                                   | result                 | connection |
|------------------------------------------|------------------------|------------|
| AA, CA                                   | delivered              | kept       |
| AE, CE                                   | transient: retried     | kept       |
| AR, CR                                   | permanent: failed      | kept       |
| no ACK within the delivery timeout       | transient: retried     | dropped    |
| an ACK for another control id            | transient: retried     | dropped    |
| no MSA, a framing error, an MLLP NAK     | transient: retried     | dropped    |
| refused, reset, closed, TLS failure      | transient: retried     | dropped    |
| no source bytes, or a message no MSH-10  | permanent: failed      | -          |

The ACK-timeout policy: a missing ACK is never a success. The receiver may have stored the
message and lost the ACK, so the retry sends the very same bytes, the same MSH-10 control id,
and a receiver that dedupes on it (as this hub's own listener does) stores it once. The
connection is dropped at the timeout, so a late ACK can never be read as the answer to the next
message on that connection; the next send opens a fresh one.

A reused connection that the peer closed before any byte of the answer arrived (an idle
connection it timed out) is retried once on a new connection within the same timeout; that
resend carries the same control id too.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from adapters.mapping.fhir_to_v2 import ToV2Error, to_v2
from adapters.registry import register_transport
from adapters.transports.base import Encoded, Payload, SendResult, TransportError
from adapters.transports.mllp import FrameReader, FramingError, frame
from adapters.transports.webhook import secret

COMMIT_ACK, COMMIT_NAK = b"\x06", b"\x15"  # MLLP release 2 commit acknowledgements

DELIVERED = {"AA", "CA"}
RETRY = {"AE", "CE"}
REJECTED = {"AR", "CR"}
ERR_SEVERITY = {"E": "error", "W": "warning", "I": "information", "F": "fatal"}


class ClientTLS(BaseModel):
    """TLS to the receiver; files are PEM paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = None  # the CA the receiver's certificate chains to; system store if empty
    cert_file: str | None = None  # a client certificate, for receivers that ask for one
    key_file: str | None = None
    key_password: SecretStr | None = secret(None)
    verify_hostname: bool = True
    server_hostname: str | None = None  # the name to expect (and send as SNI); default: host
    min_version: Literal["1.2", "1.3"] = "1.2"

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if self.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
        )
        context.check_hostname = self.verify_hostname
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_file:
            password = self.key_password.get_secret_value() if self.key_password else None
            context.load_cert_chain(self.cert_file, self.key_file, password=password)
        return context


class _PeerClosed(Exception):
    """The peer closed the connection before any byte of the answer arrived."""


class _Connection:
    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        self.sock = sock
        self.reader = FrameReader(max_bytes)
        self.last_used = time.monotonic()
        self.uses = 0
        self.surplus = False

    def stale(self, idle_timeout: float) -> bool:
        """Unused too long, closed by the peer, or holding bytes nobody asked for."""
        if time.monotonic() - self.last_used > idle_timeout:
            return True
        self.sock.setblocking(False)
        try:
            self.sock.recv(1024)  # b"": closed; bytes: something unasked, e.g. a late answer
            return True
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False  # nothing to read: alive (TLS 1.3 session tickets are consumed here)
        except OSError:
            return True
        finally:
            self.sock.setblocking(True)

    def exchange(self, data: bytes, deadline: float) -> bytes:
        """Send one frame and read the one HL7 answer frame; raises on timeout or trouble."""
        answered = False
        try:
            self.sock.settimeout(_left(deadline))
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            raise _PeerClosed()
        while True:
            self.sock.settimeout(_left(deadline))
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                if answered:
                    raise
                chunk = b""
            if not chunk:
                if not answered and not self.reader.holding:
                    raise _PeerClosed()
                raise ConnectionError("the receiver closed the connection before the ACK ended")
            answered = True
            items = self.reader.feed(chunk)
            for position, item in enumerate(items, 1):
                if isinstance(item, FramingError):
                    raise ConnectionError(f"the answer is not MLLP: {item}")
                if item == COMMIT_ACK:  # release 2: committed; the HL7 ACK follows
                    continue
                if item == COMMIT_NAK:
                    raise ConnectionError("the receiver sent an MLLP NAK (it could not commit)")
                # More frames than the one answer: the connection's state is no longer known.
                self.surplus = position < len(items)
                return item

    @property
    def clean(self) -> bool:
        """Nothing left over after the answer: the next message can use this connection."""
        return not self.reader.holding and not self.surplus

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _Pool:
    """Up to ``size`` connections, each carrying one message at a time; thread-safe."""

    def __init__(self, size: int, connect, idle_timeout: float) -> None:
        self.slots = threading.BoundedSemaphore(size)
        self.size = size
        self.connect = connect
        self.idle_timeout = idle_timeout
        self.lock = threading.Lock()
        self.idle: list[_Connection] = []
        self.opened = 0

    def acquire(self, deadline: float, *, fresh: bool = False) -> _Connection:
        if not self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TransportError(f"all {self.size} connections stayed busy until the timeout")
        try:
            while not fresh:
                with self.lock:
                    if not self.idle:
                        break
                    conn = self.idle.pop()  # the most recently used: the likeliest alive
                if not conn.stale(self.idle_timeout):
                    return conn
                conn.close()
            conn = self.connect(deadline)
            with self.lock:
                self.opened += 1
            return conn
        except BaseException:
            self.slots.release()
            raise

    def release(self, conn: _Connection, *, keep: bool) -> None:
        if keep:
            conn.last_used = time.monotonic()
            conn.uses += 1
            with self.lock:
                self.idle.append(conn)
        else:
            conn.close()
        self.slots.release()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


@register_transport("mllp")
class MllpSender:
    needs_source = True

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        host: str = Field(min_length=1, description="The receiving system's address.")
        port: int = Field(ge=1, le=65535)
        connections: int = Field(
            2, ge=1, le=32, description="Persistent connections kept open to the receiver."
        )
        connect_timeout_s: float = Field(10.0, gt=0)
        idle_timeout_s: float = Field(
            120.0, gt=0, description="An unused connection is closed after this long."
        )
        max_ack_bytes: int = Field(
            1024 * 1024, ge=1024, description="A longer answer is refused as not an ACK."
        )
        tls: ClientTLS | None = None
        payload: Literal["source", "rebuilt"] = Field(
            "source",
            description="source: the message as received. rebuilt: HL7 v2.5.1 built back from "
            "the canonical Bundle (field rules included), e.g. for a FHIR or JSON sender.",
        )
        message_type: Literal["ADT^A01", "ADT^A04", "ADT^A08", "ORU^R01"] | None = Field(
            None, description="The message a rebuilt payload becomes (required with rebuilt)."
        )
        sending_facility: str = Field("", description="MSH-4 of a rebuilt message.")
        receiving_application: str = Field("", description="MSH-5 of a rebuilt message.")
        receiving_facility: str = Field("", description="MSH-6 of a rebuilt message.")

        @model_validator(mode="after")
        def _rebuilt_needs_a_type(self):
            if self.payload == "rebuilt" and not self.message_type:
                raise ValueError("message_type is required when payload is rebuilt")
            return self

    def __init__(self, config: Config) -> None:
        self.config = config
        self.peer = f"{config.host}:{config.port}"
        self.pool = _Pool(config.connections, self._connect, config.idle_timeout_s)
        self._tls_context: ssl.SSLContext | None = None
        self._tls_lock = threading.Lock()

    def encode(self, payload: Payload) -> Encoded:
        """The message this sender sends (framed on the wire): the source as received, or the v2
        message built back from the canonical Bundle."""
        if self.config.payload == "rebuilt":
            return Encoded(self._rebuilt(payload), "x-application/hl7-v2+er7", f"MLLP {self.peer}")
        if not payload.source:
            raise TransportError(
                "no HL7 v2 message to forward (the source was not loaded or was pruned)",
                permanent=True,
            )
        return Encoded(payload.source, "x-application/hl7-v2+er7", f"MLLP {self.peer}")

    def _rebuilt(self, payload: Payload) -> bytes:
        source = payload.source if payload.source and payload.source.startswith(b"MSH") else None
        try:
            bundle = json.loads(payload.body)
            text = to_v2(
                bundle,
                self.config.message_type,
                control_id=control_id_of(source) if source else f"HUB{payload.message_id}",
                sending_facility=self.config.sending_facility,
                receiving_application=self.config.receiving_application,
                receiving_facility=self.config.receiving_facility,
            )
        except (ValueError, ToV2Error) as exc:
            raise TransportError(f"cannot build the v2 message: {exc}", permanent=True) from exc
        return text.encode()

    def send(self, payload: Payload, *, timeout: float) -> SendResult:
        message = self.encode(payload).body
        control_id = control_id_of(message)
        sent = f"MLLP {self.peer} ({len(message)} bytes, MSH-10 {control_id})"
        deadline = time.monotonic() + timeout
        data = frame(message)
        for fresh in (False, True):
            conn = self.pool.acquire(deadline, fresh=fresh)
            try:
                answer = conn.exchange(data, deadline)
            except _PeerClosed:
                self.pool.release(conn, keep=False)
                if conn.uses and not fresh:  # a kept connection the peer had closed: once more
                    continue
                raise TransportError(
                    f"{self.peer} closed the connection without an ACK for {control_id}"
                )
            except TimeoutError:
                self.pool.release(conn, keep=False)
                raise TransportError(
                    f"no ACK from {self.peer} for {control_id} within {timeout:.3g} s; the "
                    "connection was dropped and the retry resends the same control id"
                )
            except (OSError, ConnectionError) as exc:
                self.pool.release(conn, keep=False)
                raise TransportError(f"lost the connection to {self.peer}: {_why(exc)}")
            except BaseException:
                self.pool.release(conn, keep=False)
                raise
            break
        ack = Ack.parse(answer)
        if ack is None or ack.control_id != control_id:
            self.pool.release(conn, keep=False)
            got = "no MSA segment" if ack is None else f"an ACK for {ack.control_id!r}"
            raise TransportError(
                f"{self.peer} answered {got} to {control_id}; the connection was dropped"
            )
        self.pool.release(conn, keep=conn.clean)
        summary = f"{ack.code} {ack.text}".strip()[:1000]
        if ack.code in DELIVERED:
            return SendResult(None, summary, sent, ack.issues)
        raise TransportError(
            f"{self.peer} answered {summary} for {control_id}",
            permanent=ack.code in REJECTED,
            response=summary,
            issues=ack.issues,
        )

    def close(self) -> None:
        self.pool.close()

    def _connect(self, deadline: float) -> _Connection:
        cfg = self.config
        try:
            sock = socket.create_connection(
                (cfg.host, cfg.port), timeout=min(cfg.connect_timeout_s, _left(deadline))
            )
        except TimeoutError:
            raise TransportError(f"cannot reach {self.peer}: no answer to connect")
        except OSError as exc:
            raise TransportError(f"cannot reach {self.peer}: {_why(exc)}")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if cfg.tls is None:
            return _Connection(sock, cfg.max_ack_bytes)
        try:
            sock.settimeout(_left(deadline))
            sock = self._tls().wrap_socket(
                sock, server_hostname=cfg.tls.server_hostname or cfg.host
            )
        except (OSError, ValueError) as exc:
            sock.close()
            raise TransportError(f"TLS with {self.peer} failed: {_why(exc)}")
        return _Connection(sock, cfg.max_ack_bytes)

    def _tls(self) -> ssl.SSLContext:
        with self._tls_lock:
            if self._tls_context is None:
                self._tls_context = self.config.tls.context()
            return self._tls_context


class Ack:
    """MSA (and ERR) of an HL7 v2 ACK, read with the ACK's own separators."""

    __slots__ = ("code", "control_id", "text", "issues")

    def __init__(self, code: str, control_id: str, text: str, issues: tuple[dict, ...]) -> None:
        self.code, self.control_id, self.text, self.issues = code, control_id, text, issues

    @classmethod
    def parse(cls, data: bytes) -> Ack | None:
        segments = _segments(data)
        if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
            return None
        sep, comp = segments[0][3], segments[0][4]
        msa = next((s.split(sep) for s in segments if s.startswith("MSA" + sep)), None)
        if msa is None or len(msa) < 3:
            return None
        code, control_id = msa[1].strip().upper(), msa[2].strip()
        text = msa[3].strip() if len(msa) > 3 else ""
        issues = tuple(
            _err_issue(s.split(sep), comp, code, text)
            for s in segments
            if s.startswith("ERR" + sep)
        )
        if not issues and code not in DELIVERED:
            issues = ({"severity": "error", "code": code, "diagnostics": text, "expression": []},)
        return cls(code, control_id, text, issues)


def _err_issue(err: list[str], comp: str, code: str, text: str) -> dict:
    def field(n: int) -> str:
        return err[n].strip() if len(err) > n else ""

    error_code = field(3).split(comp)
    location = "-".join(p for p in field(2).split(comp)[:3] if p)  # ERR-2: segment^seq^field
    return {
        "severity": ERR_SEVERITY.get(field(4)[:1].upper(), "error"),
        "code": error_code[0] or code,
        "diagnostics": field(8) or (error_code[1] if len(error_code) > 1 else "") or text,
        "expression": [location] if location else [],
    }


def control_id_of(message: bytes) -> str:
    """MSH-10 of the message: what the ACK's MSA-2 must echo."""
    segments = _segments(message[:8192])
    msh = segments[0] if segments else ""
    if not msh.startswith("MSH") or len(msh) < 4:
        raise TransportError("the message to forward does not start with MSH", permanent=True)
    fields = msh.split(msh[3])
    control_id = fields[9].strip() if len(fields) > 9 else ""
    if not control_id:
        raise TransportError(
            "the message to forward has no MSH-10 control id to match its ACK", permanent=True
        )
    return control_id


def _segments(data: bytes) -> list[str]:
    text = data.decode("latin-1").lstrip("\r\n\x0b ")
    return [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError()
    return left


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
