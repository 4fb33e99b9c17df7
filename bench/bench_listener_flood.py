"""The MLLP listener under connection abuse: how fast a well-behaved sender is answered.

Figures (a real `run_listeners` process, default limits unless named):
- flood_ack_p50_ms / p95 / max: a sender on one kept-open connection while 500 connections sit
  inside frames they never end, and more keep coming as fast as they are refused
  (max_connections 50);
- idle_ack_p50_ms / p95 / max and idle_lockouts: a sender opening a fresh connection for each
  message while 300 connections that send nothing, from six addresses, keep the listener full
  (lockouts: its connections that got no ACK; the target is 0).
Uses its own database (<name>_bench_listener) on the configured server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

from bench.load import END, START, message
from bench.spine import wait_port

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = int(os.environ.get("BENCH_FLOOD_MESSAGES", 200))


def bench_url() -> str:
    if not os.environ.get("DATABASE_URL"):
        from console import embedded

        os.environ["DATABASE_URL"] = embedded.postgres_url()
    db = urlparse(os.environ["DATABASE_URL"])
    name = (db.path.lstrip("/") or "postgres") + "_bench_listener"
    with psycopg.connect(urlunparse(db._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(db._replace(path=f"/{name}"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else -1.0


def send(sock: socket.socket, n: int, prefix: str) -> float:
    """One message and its ACK; the seconds it took."""
    began = time.monotonic()
    sock.sendall(START + message(n, prefix) + END)
    answer = b""
    while not answer.endswith(END):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the ACK")
        answer += chunk
    if b"MSA|AA" not in answer:
        raise RuntimeError(f"not an AA: {answer[:120]!r}")
    return time.monotonic() - began


def frame_flood(port: int) -> dict:
    stop, flood = threading.Event(), []

    def open_one(_=None):
        with contextlib.suppress(OSError):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(START + b"MSH|")
            return sock
        return None

    def keep_flooding():
        while not stop.is_set() and len(flood) < 5000:
            if sock := open_one():
                flood.append(sock)

    latencies = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sender:
        send(sender, 0, "warm")
        with ThreadPoolExecutor(32) as pool:
            flood += [s for s in pool.map(open_one, range(500)) if s]
        threads = [threading.Thread(target=keep_flooding) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for n in range(MESSAGES):
                latencies.append(send(sender, n, "flood") * 1000)
                time.sleep(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
            for sock in flood:
                sock.close()
    return {"latencies": latencies, "connections": len(flood)}


def idle_flood(port: int) -> dict:
    stop, open_now = threading.Event(), {}

    def hold(source: str) -> None:
        mine: list[socket.socket] = []
        while not stop.is_set():
            mine = [s for s in mine if _still_open(s)]
            while len(mine) < 50 and not stop.is_set():
                try:
                    mine.append(socket.create_connection(("127.0.0.1", port), 5, (source, 0)))
                except OSError:
                    break
            open_now[source] = len(mine)
            time.sleep(0.1)
        for sock in mine:
            sock.close()

    threads = [threading.Thread(target=hold, args=(f"127.0.0.{n}",)) for n in range(2, 8)]
    for thread in threads:
        thread.start()
    latencies, lockouts = [], 0
    try:
        while sum(open_now.values()) < 300:
            time.sleep(0.05)
        for n in range(MESSAGES):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as fresh:
                    latencies.append(send(fresh, n, "idle") * 1000)
            except (OSError, RuntimeError):
                lockouts += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return {"latencies": latencies, "lockouts": lockouts}


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main() -> None:
    db_url = bench_url()
    env = {**os.environ, "DATABASE_URL": db_url, "LOG_LEVEL": "ERROR"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="console.settings")
    import django

    django.setup()
    from django.db import connection

    from channels_app.models import Channel
    from tests.support import free_port

    flood_port, idle_port = free_port(), free_port()
    Channel.objects.create(
        name="flood",
        dedupe_window_s=0,
        source_config={"host": "127.0.0.1", "port": flood_port, "max_connections": 50},
    )
    Channel.objects.create(
        name="idle", dedupe_window_s=0, source_config={"host": "127.0.0.1", "port": idle_port}
    )
    connection.close()
    listener = subprocess.Popen(
        [sys.executable, "manage.py", "run_listeners"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    figures: dict = {}
    try:
        for port in (flood_port, idle_port):
            wait_port(port, timeout=60)
        flood = frame_flood(flood_port)
        lat = flood["latencies"]
        figures.update(
            flood_ack_p50_ms=pct(lat, 0.5),
            flood_ack_p95_ms=pct(lat, 0.95),
            flood_ack_max_ms=round(max(lat), 1),
        )
        print(
            f"frame flood ({flood['connections']} connections, max_connections 50): "
            f"{len(lat)} ACKs, p50 {figures['flood_ack_p50_ms']} ms, "
            f"p95 {figures['flood_ack_p95_ms']} ms, max {figures['flood_ack_max_ms']} ms"
        )
        idle = idle_flood(idle_port)
        lat = idle["latencies"]
        figures.update(
            idle_ack_p50_ms=pct(lat, 0.5),
            idle_ack_p95_ms=pct(lat, 0.95),
            idle_ack_max_ms=round(max(lat, default=-1), 1),
            idle_lockouts=idle["lockouts"],
        )
        print(
            f"300 idle connections, a fresh connection per message: {len(lat)} ACKs, "
            f"{idle['lockouts']} locked out, p50 {figures['idle_ack_p50_ms']} ms, "
            f"p95 {figures['idle_ack_p95_ms']} ms, max {figures['idle_ack_max_ms']} ms"
        )
    finally:
        os.killpg(listener.pid, signal.SIGTERM)
        try:
            listener.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(listener.pid, signal.SIGKILL)
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
