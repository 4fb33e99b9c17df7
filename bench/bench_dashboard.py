"""Reporting must not slow the message path: end-to-end throughput with and without a Dashboard
socket open, in one run, on the same processes (listener, two Celery workers, daphne, sink),
set up by bench.spine.prepare as the spine's own figures are.

Figures: e2e_msgs_per_s_no_dashboard, e2e_msgs_per_s_dashboard_open (each the mean of rounds
that alternate, so drift on a shared machine hits both alike), dashboard_overhead_pct, the CPU
all processes spent per delivered message each way (e2e_cpu_ms_per_msg_no_dashboard,
e2e_cpu_ms_per_msg_dashboard_open, dashboard_cpu_overhead_pct: on a machine others share, the
steadier of the two comparisons), and dashboard_updates (snapshots and error batches the open
socket received while loaded).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from statistics import mean

from bench.spine import CpuMeter, _delivered_count, _wait_drained, offer, prepare

# Above what the hub keeps up with: each round measures its capacity, not the rate offered.
RATE = float(os.environ.get("BENCH_DASH_RATE", 2000))
ROUND_S = float(os.environ.get("BENCH_DASH_S", 15))
ROUNDS = int(os.environ.get("BENCH_DASH_ROUNDS", 2))  # each: one without, one with the socket


class DashboardSocket:
    """A bare websocket client (RFC 6455, text frames and pings only) reading /ws/dashboard/ as
    a browser tab would, in a thread, counting the updates it receives."""

    def __init__(self, port: int, session_key: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws/dashboard/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Cookie: sessionid={session_key}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"the dashboard socket was refused: {head[:200]!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]
        self.updates = 0
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self._send(0x8, b"")
            self.sock.close()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while not self.closed:
                opcode, payload = self._frame()
                if opcode == 0x1 and json.loads(payload)["type"] in ("snapshot", "errors"):
                    self.updates += 1
                elif opcode == 0x9:
                    self._send(0xA, payload)
                elif opcode == 0x8:
                    return

    def _frame(self) -> tuple[int, bytes]:
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return first & 0x0F, self._take(length)

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)


def main() -> None:
    stack = prepare("dashboard-")
    from django.db import connection

    from tests.support import free_port

    session_key = _viewer_session()
    connection.close()
    web_port = free_port()
    figures: dict = {}
    try:
        stack.start_listener()
        stack.start_web(web_port)
        stack.start_workers()
        time.sleep(3)
        from bench import load

        with ProcessPoolExecutor(1) as loadgen:
            loadgen.submit(load.paced, stack.mllp_port, 200, 2, "warm", 4).result()
            _wait_drained(stack.db_url, 60)
            rates: dict[bool, list[float]] = {False: [], True: []}
            cpu: dict[bool, list[float]] = {False: [], True: []}
            updates = 0
            for n in range(ROUNDS):
                for open_socket in (False, True):
                    socket_ = DashboardSocket(web_port, session_key) if open_socket else None
                    meter, before = CpuMeter(stack).start(), _delivered_count(stack.db_url)
                    step = offer(loadgen, stack, RATE, ROUND_S, f"d{n}{int(open_socket)}-")
                    spent, delivered = meter.stop(), _delivered_count(stack.db_url) - before
                    rates[open_socket].append(step["delivered_per_s"])
                    cpu[open_socket].append(sum(spent.values()) * 1000 / max(1, delivered))
                    print(
                        f"round {n + 1} {'with' if open_socket else 'without'} the socket: "
                        f"{step['delivered_per_s']:.0f} msg/s; CPU ms per message: "
                        + ", ".join(
                            f"{role} {seconds * 1000 / max(1, delivered):.3f}"
                            for role, seconds in sorted(spent.items(), key=lambda i: -i[1])
                        )
                    )
                    if socket_ is not None:
                        updates += socket_.updates
                        socket_.close()
                    # Each round starts as the first did: no backlog, no grown tables.
                    _wait_drained(stack.db_url, 300)
                    _empty_tables(stack.db_url)
    finally:
        stack.stop()
    without, with_ = (round(mean(rates[k]), 1) for k in (False, True))
    cpu_without, cpu_with = (round(mean(cpu[k]), 3) for k in (False, True))
    figures.update(
        e2e_msgs_per_s_no_dashboard=without,
        e2e_msgs_per_s_dashboard_open=with_,
        dashboard_overhead_pct=round((without - with_) / without * 100, 1) if without else None,
        e2e_cpu_ms_per_msg_no_dashboard=cpu_without,
        e2e_cpu_ms_per_msg_dashboard_open=cpu_with,
        dashboard_cpu_overhead_pct=round((cpu_with - cpu_without) / cpu_without * 100, 1),
        dashboard_updates=updates,
    )
    print(
        f"end to end, offered {RATE:.0f} msg/s, {ROUNDS} × {ROUND_S:.0f} s each way: "
        f"{without} msg/s without a dashboard, {with_} msg/s with one open "
        f"({figures['dashboard_overhead_pct']} % apart; the socket got {updates} updates); "
        f"CPU per delivered message, every process and PostgreSQL: {cpu_without} ms without, "
        f"{cpu_with} ms with ({figures['dashboard_cpu_overhead_pct']} % more)"
    )
    print("BENCH " + json.dumps(figures))


def _empty_tables(db_url: str) -> None:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE channels_app_message, channels_app_dedupeentry CASCADE")
        conn.execute("VACUUM ANALYZE channels_app_message")


def _viewer_session() -> str:
    """A signed-in viewer's session, as the browser would hold it after signing in."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    from console.roles import Role, set_role

    user = User.objects.create_user("bench-viewer", password=os.urandom(12).hex())
    set_role(user, Role.VIEWER)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


if __name__ == "__main__":
    main()
