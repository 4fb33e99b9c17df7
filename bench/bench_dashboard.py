"""Reporting must not slow the message path: end-to-end throughput with and without a Dashboard
socket open, in one run, on the same processes (listener, two Celery workers, daphne, sink).

Figures: e2e_msgs_per_s_no_dashboard, e2e_msgs_per_s_dashboard_open (each the mean of rounds
that alternate, so drift on a shared machine hits both alike), dashboard_overhead_pct, and
dashboard_updates (snapshots and error batches the open socket received while loaded).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from bench.spine import (
    DELIVER_THREADS,
    PROCESS_WORKERS,
    ROOT,
    _delivered_between,
    _wait_drained,
    _wait_port,
    bench_urls,
)

RATE = float(os.environ.get("BENCH_DASH_RATE", 400))
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
    db_url, redis_url = bench_urls()
    os.environ.update(
        DATABASE_URL=db_url, REDIS_URL=redis_url, DJANGO_SETTINGS_MODULE="console.settings"
    )
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    import redis as redis_lib
    from django.db import connection

    from channels_app.models import Channel, Destination
    from tests.support import free_port

    redis_lib.Redis.from_url(redis_url).flushdb()
    mllp_port, sink_port, web_port = free_port(), free_port(), free_port()
    channel = Channel.objects.create(
        name="bench", source_config={"host": "127.0.0.1", "port": mllp_port}
    )
    Destination.objects.create(
        channel=channel,
        name="sink",
        transport="fhir_rest",
        config={"base_url": f"http://127.0.0.1:{sink_port}/fhir"},
    )
    channel.publish(note="bench")
    session_key = _viewer_session()
    connection.close()

    procs: list[subprocess.Popen] = []
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)

    def spawn(*cmd: str) -> subprocess.Popen:
        log = open(logs / f"dashboard-{len(procs)}.log", "w")  # noqa: SIM115 (lives with the process)
        proc = subprocess.Popen(
            list(cmd), cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log
        )
        procs.append(proc)
        return proc

    celery = [sys.executable, "-m", "celery", "-A", "console", "worker", "-l", "WARNING"]
    celery += ["--without-gossip", "--without-mingle"]
    figures: dict = {}
    try:
        spawn(sys.executable, "-m", "bench.sink", str(sink_port))
        spawn(sys.executable, "manage.py", "run_listeners", "--channel", "bench")
        spawn(
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(web_port),
            "console.asgi:application",
        )
        spawn(*celery, "-n", "process@%h", "-Q", "process,default", "-c", PROCESS_WORKERS)
        spawn(*celery, "-n", "deliver@%h", "-Q", "deliver", "-P", "threads", "-c", DELIVER_THREADS)
        _wait_port(mllp_port)
        _wait_port(web_port)
        time.sleep(3)
        from bench import load

        with ProcessPoolExecutor(1) as loadgen:
            loadgen.submit(load.paced, mllp_port, 200, 2, "warm", 4).result()
            _wait_drained(db_url, 60)
            rates: dict[bool, list[float]] = {False: [], True: []}
            updates = 0
            for n in range(ROUNDS):
                for open_socket in (False, True):
                    socket_ = DashboardSocket(web_port, session_key) if open_socket else None
                    start = time.time()
                    prefix = f"d{n}{int(open_socket)}-"
                    loadgen.submit(load.paced, mllp_port, RATE, ROUND_S, prefix, 8).result()
                    end = time.time()
                    _wait_drained(db_url, 120)
                    rates[open_socket].append(
                        _delivered_between(db_url, start, end) / (end - start)
                    )
                    if socket_ is not None:
                        updates += socket_.updates
                        socket_.close()
        without, with_ = (round(sum(r) / len(r), 1) for r in (rates[False], rates[True]))
        figures.update(
            e2e_msgs_per_s_no_dashboard=without,
            e2e_msgs_per_s_dashboard_open=with_,
            dashboard_overhead_pct=round((without - with_) / without * 100, 1) if without else None,
            dashboard_updates=updates,
        )
        print(
            f"end to end, offered {RATE:.0f} msg/s, {ROUNDS} × {ROUND_S:.0f} s each way: "
            f"{without} msg/s without a dashboard, {with_} msg/s with one open "
            f"({figures['dashboard_overhead_pct']} % apart; the socket got {updates} updates)"
        )
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    print("BENCH " + json.dumps(figures))


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
