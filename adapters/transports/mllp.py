"""MLLP framing (HL7 v2 over TCP): <VT> message <FS><CR>."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, SecretStr

from adapters.codecs.hl7v2_ack import AckMode

START = b"\x0b"
END = b"\x1c\x0d"

# MLLP release 2 (HL7 Version 3 Transport Specification: MLLP, release 2) makes MLLP reliable:
# the receiver answers every block, once it has committed the block's content, with a commit
# acknowledgement block holding the single byte ACK (0x06), or with a negative commit
# acknowledgement block holding NAK (0x15) when it could not commit it. Both are framed like any
# block, <VT> byte <FS><CR>; the sender sends nothing new until it has one of them. MLLP knows
# nothing of HL7, so an HL7 ACK is content of its own: it follows in a block of its own, which
# the peer in turn answers with a commit block.
COMMIT_ACK = b"\x06"
COMMIT_NAK = b"\x15"
COMMIT_ACK_BLOCK = START + COMMIT_ACK + END
COMMIT_NAK_BLOCK = START + COMMIT_NAK + END


class FramingError(Exception):
    """Bytes that are not a well-formed frame; ``data`` keeps them (or a prefix) for the record."""

    def __init__(self, reason: str, data: bytes = b"", *, outside: bool = False) -> None:
        super().__init__(reason)
        self.data = data
        self.outside = outside  # bytes between frames, not a frame gone wrong


KEEP_OF_OVERSIZE = 64 * 1024


def frame(message: bytes) -> bytes:
    return START + message + END


class FrameReader:
    """Incremental MLLP deframer: feed bytes, get whole messages; bounded by ``max_bytes``.

    An oversize frame is reported once (with its first bytes kept) and the rest of it is skipped
    up to its end marker, so one huge message never costs more than ``max_bytes`` of memory.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buffer = bytearray()
        self.skipping = False

    def feed(self, data: bytes) -> list[bytes | FramingError]:
        self.buffer += data
        out: list[bytes | FramingError] = []
        while self.buffer:
            if self.skipping:
                end = self.buffer.find(END)
                if end == -1:
                    del self.buffer[: max(0, len(self.buffer) - 1)]  # keep a possible split 0x1C
                    break
                del self.buffer[: end + 2]
                self.skipping = False
                continue
            start = self.buffer.find(START)
            if start != 0:
                junk = bytes(self.buffer[: self.max_bytes if start == -1 else start])
                del self.buffer[: len(self.buffer) if start == -1 else start]
                if junk.strip():
                    out.append(
                        FramingError(
                            "data outside an MLLP frame (no 0x0B start byte)", junk, outside=True
                        )
                    )
                continue
            end = self.buffer.find(END, 1)
            if end == -1:
                if len(self.buffer) > self.max_bytes + 1:
                    kept = bytes(self.buffer[1 : KEEP_OF_OVERSIZE + 1])
                    self.buffer.clear()
                    self.skipping = True
                    out.append(
                        FramingError(f"message larger than the {self.max_bytes}-byte limit", kept)
                    )
                break
            body = bytes(self.buffer[1:end])
            del self.buffer[: end + 2]
            if len(body) > self.max_bytes:
                out.append(
                    FramingError(
                        f"message larger than the {self.max_bytes}-byte limit",
                        body[:KEEP_OF_OVERSIZE],
                    )
                )
            else:
                out.append(body)
        return out

    @property
    def holding(self) -> bool:
        """True inside a frame: its start has arrived, its end has not."""
        return bool(self.buffer) or self.skipping

    def flush(self, reason: str) -> FramingError | None:
        """Give up on the frame in progress (peer gone, or too slow): its bytes, for the record.

        An oversize frame being skipped was reported already, so it yields nothing more.
        """
        if not self.holding:
            return None
        partial = bytes(self.buffer[1 : self.max_bytes + 1])
        was_skipping = self.skipping
        self.buffer.clear()
        self.skipping = False
        return None if was_skipping else FramingError(reason, partial)


class ListenerLimits(BaseModel):
    """What one MLLP listener grants its peers; read from the channel's ``source_config``.

    Every limit bounds what a hostile or broken sender can hold: a connection slot
    (``max_connections``, ``max_connections_per_ip``), a slot for nothing (``preframe_timeout_s``:
    a new connection must start a frame within seconds; ``idle_timeout_s``: a sender that has
    sent frames may wait that long for its next one), or a slot and a buffer for a frame that
    never ends (``frame_timeout_s``: a frame, once started, must end within that time, so a
    sender trickling bytes is cut off). A listener at a limit first closes an idle connection
    (one that has never started a frame first) rather than refuse a new one.
    ``allowed_ips`` (addresses or networks; empty allows all) is checked at accept.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    max_connections: int = Field(100, ge=1, description="Open connections at most, all peers.")
    # So one flooding host cannot take every slot; None lifts the cap (behind a load balancer
    # that hides the senders' addresses, for one).
    max_connections_per_ip: int | None = Field(
        20, ge=1, description="Open connections at most from one address; blank: no cap."
    )
    preframe_timeout_s: float = Field(
        5.0, gt=0, description="A new connection that starts no frame within this is closed."
    )
    idle_timeout_s: float = Field(
        600.0, gt=0, description="A connection with no complete frame for this long is closed."
    )
    frame_timeout_s: float = Field(
        60.0, gt=0, description="A frame, once started, must end within this time."
    )
    allowed_ips: tuple[IPvAnyNetwork, ...] = Field(
        (),
        description='Addresses or networks allowed to connect, e.g. ["10.1.0.0/16"]; empty: all.',
    )

    def allows(self, address: str) -> bool:
        if not self.allowed_ips:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allowed_ips)


class TLSConfig(BaseModel):
    """TLS for one end of an MLLP connection (stdlib ``ssl``); files are PEM paths.

    As a server: ``cert_file`` + ``key_file`` are required; ``ca_file`` is the CA that client
    certificates must chain to, asked for when given and required with ``require_client_cert``.
    As a client: ``ca_file`` is the CA the server must chain to (the system store when empty),
    ``cert_file`` + ``key_file`` the client certificate when the server asks for one, and
    ``verify_hostname`` checks the server's name against its certificate.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path | None = Field(None, description="This end's certificate (PEM file path).")
    key_file: Path | None = Field(None, description="Its private key (PEM file path).")
    key_password: SecretStr | None = Field(None, description="The key's password, if it has one.")
    ca_file: Path | None = Field(
        None, description="The CA the other end's certificate must chain to (PEM file path)."
    )
    require_client_cert: bool = Field(
        False, description="As a listener: refuse clients without a certificate from the CA."
    )
    verify_hostname: bool = Field(
        True, description="As a sender: check the server's name against its certificate."
    )
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="Oldest TLS version accepted.")

    def server_context(self) -> ssl.SSLContext:
        if not (self.cert_file and self.key_file):
            raise ValueError("a TLS listener needs tls.cert_file and tls.key_file")
        if self.require_client_cert and not self.ca_file:
            raise ValueError("tls.require_client_cert needs tls.ca_file to check them against")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._common(context)
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
            context.verify_mode = (
                ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
            )
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._common(context)
        context.check_hostname = self.verify_hostname
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return context

    def _common(self, context: ssl.SSLContext) -> None:
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if self.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
        )
        if self.cert_file:
            password = self.key_password.get_secret_value() if self.key_password else None
            context.load_cert_chain(self.cert_file, self.key_file, password=password)


class ListenerOptions(BaseModel):
    """How one MLLP listener speaks; read from the channel's ``source_config`` with its limits.

    ``ack_mode``: ``original`` (AA/AE/AR) or ``enhanced`` (CA/CE/CR as MSH-15 asks; see
    `adapters.codecs.hl7v2_ack.ack_code`). ``mllp_release``: 2 adds the release 2 commit
    acknowledgement block before the HL7 ACK (see `COMMIT_ACK`). ``tls``: see `TLSConfig`.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    ack_mode: AckMode = Field(
        "original",
        description="original: AA/AE/AR. enhanced: CA/CE/CR as the sender's MSH-15/16 ask.",
    )
    mllp_release: Literal[1, 2] = Field(
        1, description="2 sends the release 2 commit acknowledgement before the HL7 ACK."
    )
    tls: TLSConfig | None = Field(None, description="Accept TLS connections only.")


class MLLPClient:
    """A blocking MLLP sender that waits for the ACK frame (used by tests, bench and demo)."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.reader = FrameReader(16 * 1024 * 1024)
        self.pending: list[bytes] = []

    def send(self, message: bytes) -> bytes:
        self.sock.sendall(frame(message))
        return self.receive()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> bytes:
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the ACK arrived")
            self.pending.extend(m for m in self.reader.feed(chunk) if isinstance(m, bytes))
        return self.pending.pop(0)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MLLPClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
