"""MLLP framing (HL7 v2 over TCP): <VT> message <FS><CR>."""

from __future__ import annotations

import socket

START = b"\x0b"
END = b"\x1c\x0d"


class FramingError(Exception):
    """Bytes that are not a well-formed frame; ``data`` keeps them (or a prefix) for the record."""

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.data = data


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
                        FramingError("data outside an MLLP frame (no 0x0B start byte)", junk)
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
