"""The receive side beside its floor: our MLLP listener against a bare asyncio server
(`bench.bare_ingest`) committing to the same PostgreSQL in groups, measured in turns in one run.

Figures: ingest_bare_msgs_per_s and ingest_ours_msgs_per_s (16 connections, closed loop, each
message committed before its ACK), ingest_ratio (ours / bare; target at least 0.6),
ack_ours_p50/p95/p99_ms and ack_bare_p50/p95/p99_ms (one connection at 100 msg/s; target p50 at
most 1.0 ms), and the CPU each server and its PostgreSQL backends spent per message in both (a
figure the machine's load sways less than the timings; the servers take turns, so the backends
busy in a turn are the server's own). Ours runs as in production: a real `run_listeners` process, bodies
sealed at rest, dedupe on, statistics and Celery enqueueing on. Uses its own database
(<name>_bench_ingest) and the configured Redis database.

    python -m bench.bench_ingest    (BENCH_INGEST_S, BENCH_ACK_S, BENCH_INGEST_ROUNDS)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psutil
import psycopg
from cryptography.fernet import Fernet

from bench.spine import _cpu, pct, wait_port

ROOT = Path(__file__).resolve().parent.parent
INGEST_S = float(os.environ.get("BENCH_INGEST_S", 5))
ACK_S = float(os.environ.get("BENCH_ACK_S", 10))
ROUNDS = int(os.environ.get("BENCH_INGEST_ROUNDS", 4))
CONNECTIONS = 16


def bench_url() -> str:
    if not os.environ.get("DATABASE_URL"):
        from console import embedded

        os.environ["DATABASE_URL"] = embedded.postgres_url()
        os.environ.setdefault("REDIS_URL", embedded.redis_url())
    db = urlparse(os.environ["DATABASE_URL"])
    name = (db.path.lstrip("/") or "postgres") + "_bench_ingest"
    with psycopg.connect(urlunparse(db._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(db._replace(path=f"/{name}"))


def make_channel(port: int) -> None:
    import django

    django.setup()
    from django.db import connection

    from channels_app.models import Channel

    channel = Channel.objects.create(
        name="ingest", source_config={"host": "127.0.0.1", "port": port}
    )
    channel.publish(note="bench")
    connection.close()


class Servers:
    """The two servers under test, each in its own process group."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.db_name = urlparse(env["DATABASE_URL"]).path.lstrip("/")
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, port: int, *cmd: str) -> None:
        logs = ROOT / "var" / "bench"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"ingest-{name}.log", "w")  # noqa: SIM115 (lives with the process)
        self.procs[name] = subprocess.Popen(
            [sys.executable, *cmd],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.ports[name] = port
        wait_port(port, timeout=60)

    def cpu_s(self, name: str) -> float:
        times = psutil.Process(self.procs[name].pid).cpu_times()
        return times.user + times.system

    def db_cpu_s(self) -> dict[int, float]:
        """CPU seconds of each PostgreSQL backend connected to the bench database, by pid."""
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.db_name,),
            ).fetchall()
        return {pid: _cpu(pid) for (pid,) in rows}

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def measure(servers: Servers, loadgen: ProcessPoolExecutor) -> dict:
    """Each figure in turns, the order swapped every round (bare, ours, ours, bare, ...), so a
    change in the machine's load between turns weighs on both servers alike."""
    from bench import load

    names = list(servers.procs)
    for name in names:
        loadgen.submit(load.flood, servers.ports[name], 4, 1, f"warm-{name}-").result()
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    acks: dict[str, list[float]] = {name: [] for name in names}
    ack_cpu: dict[str, list[float]] = {name: [] for name in names}
    db_cpu: dict[str, list[float]] = {name: [] for name in names}
    ack_db_cpu: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(ROUNDS):
        for name in names if turn % 2 == 0 else names[::-1]:
            port = servers.ports[name]
            meter = _CpuTurn(servers, name)
            run = loadgen.submit(load.flood, port, CONNECTIONS, INGEST_S, f"in{turn}-").result()
            rates[name].append(run["per_s"])
            server_us, db_us = meter.per_message(run["messages"])
            cpu[name].append(server_us)
            db_cpu[name].append(db_us)
            meter = _CpuTurn(servers, name)
            paced = loadgen.submit(load.paced, port, 100, ACK_S / ROUNDS, f"ack{turn}-{name}-")
            acks[name] += paced.result()["latencies_ms"]
            server_us, db_us = meter.per_message(paced.result()["messages"])
            ack_cpu[name].append(server_us)
            ack_db_cpu[name].append(db_us)
    figures: dict = {}
    for name in names:
        figures[f"ingest_{name}_msgs_per_s"] = round(sum(rates[name]) / ROUNDS, 1)
        figures[f"ingest_{name}_cpu_us_per_msg"] = round(sum(cpu[name]) / ROUNDS, 1)
        figures[f"ingest_{name}_db_cpu_us_per_msg"] = round(sum(db_cpu[name]) / ROUNDS, 1)
        for q in (50, 95, 99):
            figures[f"ack_{name}_p{q}_ms"] = pct(acks[name], q / 100)
        figures[f"ack_{name}_cpu_us_per_msg"] = round(sum(ack_cpu[name]) / ROUNDS, 1)
        figures[f"ack_{name}_db_cpu_us_per_msg"] = round(sum(ack_db_cpu[name]) / ROUNDS, 1)
    figures["ingest_ratio"] = round(
        figures["ingest_ours_msgs_per_s"] / figures["ingest_bare_msgs_per_s"], 3
    )
    return figures


class _CpuTurn:
    """The CPU one server and the database's backends spend during one turn."""

    def __init__(self, servers: Servers, name: str) -> None:
        self.servers, self.name = servers, name
        self.server = servers.cpu_s(name)
        self.db = servers.db_cpu_s()

    def per_message(self, messages: int) -> tuple[float, float]:
        """(server, database) µs of CPU per message since the turn began."""
        server = self.servers.cpu_s(self.name) - self.server
        db = sum(s - self.db.get(pid, 0.0) for pid, s in self.servers.db_cpu_s().items())
        return server / messages * 1e6, db / messages * 1e6


def report(figures: dict, load_before: tuple, load_after: tuple) -> None:
    for name in ("bare", "ours"):
        print(
            f"ingest {name:4s}, {CONNECTIONS} connections, {ROUNDS} x {INGEST_S:g} s: "
            f"{figures[f'ingest_{name}_msgs_per_s']:.0f} msg/s "
            f"({figures[f'ingest_{name}_cpu_us_per_msg']:.0f} µs of server CPU and "
            f"{figures[f'ingest_{name}_db_cpu_us_per_msg']:.0f} µs of PostgreSQL CPU per message)"
        )
    print(f"ingest ours / bare: {figures['ingest_ratio']:.2f} (target at least 0.60)")
    for name in ("bare", "ours"):
        print(
            f"ACK {name:4s}, 1 connection at 100 msg/s, {ACK_S:g} s in {ROUNDS} turns: "
            f"p50 {figures[f'ack_{name}_p50_ms']} ms, p95 {figures[f'ack_{name}_p95_ms']} ms, "
            f"p99 {figures[f'ack_{name}_p99_ms']} ms "
            f"({figures[f'ack_{name}_cpu_us_per_msg']:.0f} µs of server CPU and "
            f"{figures[f'ack_{name}_db_cpu_us_per_msg']:.0f} µs of PostgreSQL CPU per message)"
        )
    print(
        "load average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(
            *load_before, *load_after
        )
    )


def main() -> None:
    db_url = bench_url()
    # Sealed at rest, as production runs; HUB_STORE_IN_CLEAR does not apply here.
    keys = os.environ.get("HUB_ENCRYPTION_KEYS") or Fernet.generate_key().decode()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "HUB_ENCRYPTION_KEYS": keys,
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    from tests.support import free_port

    ours_port, bare_port = free_port(), free_port()
    make_channel(ours_port)
    servers = Servers(env)
    load_before = os.getloadavg()
    try:
        servers.start("bare", bare_port, "-m", "bench.bare_ingest", str(bare_port), db_url)
        servers.start("ours", ours_port, "manage.py", "run_listeners", "--channel", "ingest")
        with ProcessPoolExecutor(1) as loadgen:
            figures = measure(servers, loadgen)
    finally:
        servers.stop()
    report(figures, load_before, os.getloadavg())
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
