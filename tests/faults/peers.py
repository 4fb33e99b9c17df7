"""An MLLP receiver for the fault suite: dedupes on MSH-10, and can fall silent (no ACK at all)."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections import Counter

from adapters.transports.mllp import FrameReader, frame
from tests.support import free_port


def control_id_of(message: bytes) -> str:
    fields = message.split(b"\r", 1)[0].split(b"|")
    return fields[9].decode("latin-1") if len(fields) > 9 else ""


class SilentMLLPPeer:
    """A downstream system reached over MLLP. Each MSH-10 is applied once, as a receiver that
    dedupes on it does; while ``silent`` it still applies what it reads but answers nothing (the
    worst case: stored, ACK never sent), so only a resend with the same MSH-10 keeps it single.

    Offers what `FaultHub.drain` asks of a sink: ``effects_by_control_id()``, ``requests``,
    ``repeats`` and ``stop()``.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.silent = False
        self.requests: list[dict] = []
        self.repeats: Counter[str] = Counter()
        self.applied: set[str] = set()
        self.unanswered = 0
        self.lock = threading.Lock()
        self.server: socketserver.ThreadingTCPServer | None = None
        self.connections: set[socket.socket] = set()

    def start(self) -> SilentMLLPPeer:
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                peer.connections.add(self.request)
                reader = FrameReader(16 * 1024 * 1024)
                while chunk := _recv(self.request):
                    for message in reader.feed(chunk):
                        if isinstance(message, bytes):
                            peer._receive(self.request, message)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _receive(self, sock: socket.socket, message: bytes) -> None:
        control_id = control_id_of(message)
        with self.lock:
            self.requests.append({"key": control_id, "silent": self.silent})
            if control_id in self.applied:
                self.repeats[control_id] += 1
            self.applied.add(control_id)
            if self.silent:
                self.unanswered += 1
                return
        ack = (
            f"MSH|^~\\&|PEER|PEER|HUB|HUB|20240101000000||ACK|A{control_id}|P|2.5.1\r"
            f"MSA|AA|{control_id}\r"
        ).encode()
        with contextlib.suppress(OSError):
            sock.sendall(frame(ack))

    def effects_by_control_id(self) -> Counter[str]:
        with self.lock:
            return Counter(self.applied)

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for sock in self.connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""
