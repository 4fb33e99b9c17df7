"""A real MLLP receiver for sender tests: it answers each frame as its ``answer`` function says."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable

from adapters.transports.mllp import FrameReader, frame


def control_id(message: bytes) -> str:
    return message.decode("latin-1").split("\r", 1)[0].split("|")[9]


def ack(code: str, control: str, text: str = "", err: str = "") -> bytes:
    segments = [
        f"MSH|^~\\&|RCV|FAC|HUB|FAC|20240101000000||ACK^A01^ACK|ack-{control}|P|2.5",
        f"MSA|{code}|{control}|{text}",
    ]
    if err:
        segments.append(err)
    return "\r".join(segments).encode() + b"\r"


def message(control: str, body: str = "PID|1||123^^^HOSP^MR||DOE^JANE") -> bytes:
    return (f"MSH|^~\\&|SND|FAC|RCV|FAC|20240101000000||ADT^A01|{control}|P|2.5\r{body}\r").encode()


# What the peer does with one message: a list of (delay_s, bytes) to write, or None to stay silent.
Answer = Callable[[bytes], list[tuple[float, bytes]] | None]


def answering(code: str) -> Answer:
    return lambda m: [(0.0, frame(ack(code, control_id(m), f"peer says {code}")))]


class MllpPeer:
    """Counts connections and messages; ``answer`` may be swapped while running."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.connections = 0
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open: list[socket.socket] = []
        self.stopped = False

    def start(self) -> MllpPeer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped = True
        self.server.close()
        for conn in list(self.open):
            self.drop(conn)

    def drop_all(self) -> None:
        """Close every accepted connection, as a receiver timing out idle peers does."""
        for conn in list(self.open):
            self.drop(conn)

    def drop(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.tls:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                conn.close()
                return
        with self.lock:
            self.connections += 1
            self.open.append(conn)
        reader = FrameReader(1 << 20)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                for item in reader.feed(data):
                    if not isinstance(item, bytes):
                        continue
                    with self.lock:
                        self.received.append(item)
                    for delay, reply in self.answer(item) or ():
                        time.sleep(delay)
                        conn.sendall(reply)
        except OSError:
            return
        finally:
            with self.lock:
                if conn in self.open:
                    self.open.remove(conn)
            conn.close()
