"""The spine under load: real listener, real PostgreSQL/Redis, real Celery workers, HTTP sink.

Figures: ingest_msgs_per_s (16 connections), ack_p50/p95/p99_ms (1 connection at 100 msg/s),
e2e_p95_ms (received → delivered at 200 msg/s), e2e_msgs_per_s (MLLP in → delivered, sustained),
worker_rss_mb. Uses its own database (<name>_bench) and Redis db 1 on the configured servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
INGEST_S = float(os.environ.get("BENCH_INGEST_S", 10))
ACK_S = float(os.environ.get("BENCH_ACK_S", 10))
E2E_S = float(os.environ.get("BENCH_E2E_S", 60))
E2E_LATENCY_S = float(os.environ.get("BENCH_E2E_LATENCY_S", 20))
# As in production: CPU-bound processing in processes, I/O-bound delivery in threads.
PROCESS_WORKERS = os.environ.get("BENCH_PROCESS_CONCURRENCY", "2")
DELIVER_THREADS = os.environ.get("BENCH_DELIVER_THREADS", "8")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else float("nan")
    )


def bench_urls() -> tuple[str, str]:
    """A fresh database next to the configured one, and Redis db 1."""
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        from console import embedded

        os.environ.setdefault("DATABASE_URL", embedded.postgres_url())
        os.environ.setdefault("REDIS_URL", embedded.redis_url())
    # Throwaway data, sealed at rest as production's is (settings refuse to start otherwise).
    if not os.environ.get("HUB_STORE_IN_CLEAR"):
        os.environ.setdefault("HUB_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    db = urlparse(os.environ["DATABASE_URL"])
    name = (db.path.lstrip("/") or "postgres") + "_bench"
    with psycopg.connect(urlunparse(db._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    redis = urlparse(os.environ["REDIS_URL"])
    return urlunparse(db._replace(path=f"/{name}")), urlunparse(redis._replace(path="/1"))


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
    mllp_port, sink_port = free_port(), free_port()
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
    connection.close()

    procs: list[subprocess.Popen] = []

    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)

    def spawn(*cmd: str) -> subprocess.Popen:
        # Each process logs to var/bench/<n>.log, so the figures stay readable.
        log = open(logs / f"{len(procs)}.log", "w")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(
            list(cmd),
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    figures: dict = {}
    try:
        spawn(sys.executable, "-m", "bench.sink", str(sink_port))
        spawn(sys.executable, "manage.py", "run_listeners", "--channel", "bench")
        _wait_port(mllp_port)
        from bench import load

        with ProcessPoolExecutor(1) as loadgen:
            loadgen.submit(load.flood, mllp_port, 2, 1, "warm").result()
            ingest = loadgen.submit(load.flood, mllp_port, 16, INGEST_S, "in").result()
            print(
                f"ingest, 16 connections: {ingest['messages']} messages in {ingest['seconds']:.1f} s "
                f"= {ingest['per_s']:.0f} msg/s (committed before each ACK)"
            )
            figures["ingest_msgs_per_s"] = round(ingest["per_s"], 1)
            acks = loadgen.submit(load.paced, mllp_port, 100, ACK_S, "ack").result()["latencies_ms"]
            figures.update(
                ack_p50_ms=pct(acks, 0.50), ack_p95_ms=pct(acks, 0.95), ack_p99_ms=pct(acks, 0.99)
            )
            print(
                f"ACK latency, 1 connection at 100 msg/s ({len(acks)} messages): p50 {figures['ack_p50_ms']} ms, "
                f"p95 {figures['ack_p95_ms']} ms, p99 {figures['ack_p99_ms']} ms"
            )

            _reset_traffic(db_url, redis_url)
            celery = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "console",
                "worker",
                "-l",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
            ]
            workers = [
                spawn(*celery, "-n", "process@%h", "-Q", "process,default", "-c", PROCESS_WORKERS),
                spawn(
                    *celery,
                    "-n",
                    "deliver@%h",
                    "-Q",
                    "deliver",
                    "-P",
                    "threads",
                    "-c",
                    DELIVER_THREADS,
                ),
            ]
            time.sleep(3)
            loadgen.submit(
                load.paced, mllp_port, 200, 2, "warm", 4
            ).result()  # first tasks, connections
            _wait_drained(db_url, 60)
            t0 = time.time()
            loadgen.submit(load.paced, mllp_port, 200, E2E_LATENCY_S, "lat", 4).result()
            _wait_drained(db_url, 120)
            lat = _latencies(db_url, t0)
            figures["e2e_p50_ms"], figures["e2e_p95_ms"] = pct(lat, 0.5), pct(lat, 0.95)
            print(
                f"end to end at 200 msg/s ({len(lat)} delivered): p50 {figures['e2e_p50_ms']} ms, "
                f"p95 {figures['e2e_p95_ms']} ms (received → delivered)"
            )

            offered = float(os.environ.get("BENCH_E2E_RATE", 500))
            start = time.time()
            loadgen.submit(load.paced, mllp_port, offered, E2E_S, "tp", 8).result()
            end = time.time()
            delivered = _delivered_between(db_url, start, end)
            figures["e2e_msgs_per_s"] = round(delivered / (end - start), 1)
            print(
                f"end to end, offered {offered:.0f} msg/s for {end - start:.0f} s: {delivered} delivered "
                f"= {figures['e2e_msgs_per_s']} msg/s sustained"
            )
            figures["worker_rss_mb"] = round(sum(_tree_rss_mb(w.pid) for w in workers), 1)
            print(
                f"worker RSS (process worker with {PROCESS_WORKERS} children + deliver worker with "
                f"{DELIVER_THREADS} threads): {figures['worker_rss_mb']} MB"
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


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"listener did not open port {port}")


def _reset_traffic(db_url: str, redis_url: str) -> None:
    import redis as redis_lib

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE channels_app_attempt, channels_app_delivery, channels_app_message, channels_app_dedupeentry"
        )
    redis_lib.Redis.from_url(redis_url).flushdb()


def _wait_drained(db_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (left,) = conn.execute(
                "SELECT (SELECT count(*) FROM channels_app_message WHERE status = 'RECEIVED')"
                " + (SELECT count(*) FROM channels_app_delivery WHERE status <> 'DELIVERED')"
            ).fetchone()
            if left == 0:
                return
            time.sleep(0.2)
    print(f"warning: {left} messages/deliveries still open after {timeout:.0f} s")


def _latencies(db_url: str, since: float) -> list[float]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM d.delivered_at - m.received_at) * 1000 FROM channels_app_delivery d"
            " JOIN channels_app_message m ON m.id = d.message_id"
            " WHERE d.status = 'DELIVERED' AND m.received_at >= to_timestamp(%s)",
            (since,),
        ).fetchall()
    return [float(r[0]) for r in rows]


def _delivered_between(db_url: str, start: float, end: float) -> int:
    with psycopg.connect(db_url) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM channels_app_delivery WHERE status = 'DELIVERED'"
            " AND delivered_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
            (start, end),
        ).fetchone()
    return n


def _tree_rss_mb(pid: int) -> float:
    import psutil

    parent = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20


if __name__ == "__main__":
    main()
