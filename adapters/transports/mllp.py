"""MLLP framing (HL7 v2 over TCP): <VT> message <FS><CR>."""

from __future__ import annotations

import ipaddress
import socket

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

START = b"\x0b"
END = b"\x1c\x0d"


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
    (``max_connections``, ``max_connections_per_ip``), a slot for nothing (``idle_timeout_s``: no complete frame for that
    long), or a slot and a buffer for a frame that never ends (``frame_timeout_s``: a frame, once
    started, must end within that time, so a sender trickling bytes is cut off).
    ``allowed_ips`` (addresses or networks; empty allows all) is checked at accept.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    max_connections: int = Field(100, ge=1)
    # None: no cap per address; set it so one flooding host cannot take every slot.
    max_connections_per_ip: int | None = Field(None, ge=1)
    idle_timeout_s: float = Field(600.0, gt=0)
    frame_timeout_s: float = Field(60.0, gt=0)
    allowed_ips: tuple[IPvAnyNetwork, ...] = ()

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


class MLLPClient:
    """A blocking MLLP sender that waits for the ACK frame (used by tests, bench and demo)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
