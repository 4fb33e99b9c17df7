"""The spine under load: real listener, real PostgreSQL/Redis, real Celery workers, HTTP sink.

Figures: ingest_msgs_per_s (16 connections), ack_p50/p95/p99_ms (1 connection at 100 msg/s),
e2e_p50/p95_ms (received → delivered at 200 msg/s), e2e_msgs_per_s (MLLP in → delivered: the
best rate sustained over a step of a rising offered load) with e2e_saturated_at_offered (the
offered rate of the first step the hub could not keep up with), e2e_cpu_ms_per_msg (CPU spent
per delivered message by every process on the path, PostgreSQL included: unlike a rate, it
barely moves when the machine is shared) and worker_rss_mb. Uses its own database
(<name>_bench) and a Redis database of its own (BENCH_REDIS_DB, 1) on the configured servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
INGEST_S = float(os.environ.get("BENCH_INGEST_S", 10))
ACK_S = float(os.environ.get("BENCH_ACK_S", 10))
E2E_S = float(os.environ.get("BENCH_E2E_S", 15))  # each step of the rising load
E2E_RATES = [float(r) for r in os.environ.get("BENCH_E2E_RATES", "1000,1500,2000,2500").split(",")]
E2E_LATENCY_S = float(os.environ.get("BENCH_E2E_LATENCY_S", 20))
# Count each task's statements and ids (bench/counted.py): a little CPU of its own.
COUNT = os.environ.get("BENCH_COUNT", "") == "1"
# The first seconds of a step are not counted: the first messages are still on their way.
SETTLE_S = 2.0
# A step keeps up when this share of what was offered in it was delivered in it.
KEPT_UP = 0.95


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else float("nan")
    )


def bench_urls() -> tuple[str, str]:
    """A fresh database next to the configured one, and a Redis database of the bench's own."""
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
    redis_db = os.environ.get("BENCH_REDIS_DB", "1")  # flushed: never the one the hub uses
    return urlunparse(db._replace(path=f"/{name}")), urlunparse(redis._replace(path=f"/{redis_db}"))


@dataclass
class Stack:
    """The hub's processes on a throwaway database with one MLLP channel delivering to an HTTP
    sink, started by role and stopped together (each logs to var/bench/<prefix><role>.log)."""

    db_url: str
    redis_url: str
    env: dict
    mllp_port: int
    sink_port: int
    log_prefix: str = ""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def spawn(self, role: str, *cmd: str) -> subprocess.Popen:
        logs = ROOT / "var" / "bench"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"{self.log_prefix}{role}.log", "w")  # noqa: SIM115 (lives with it)
        proc = subprocess.Popen(
            list(cmd), cwd=ROOT, env=self.env, start_new_session=True, stdout=log, stderr=log
        )
        self.procs[role] = proc
        return proc

    def start_listener(self) -> None:
        self.spawn("sink", sys.executable, "-m", "bench.sink", str(self.sink_port))
        self.spawn("listener", sys.executable, "manage.py", "run_listeners", "--channel", "bench")
        wait_port(self.mllp_port)

    def start_workers(self) -> None:
        """The process and deliver workers, as console/run.py starts them."""
        from console.run import worker_commands

        for role, cmd in worker_commands(sys.executable).items():
            if COUNT:  # the same workers, counting their statements (bench/counted.py)
                cmd = [("bench.counted" if arg == "console" else arg) for arg in cmd]
            self.spawn(role, *cmd, "--without-gossip", "--without-mingle")

    def start_web(self, port: int) -> None:
        self.spawn(
            "web", sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
            "console.asgi:application",
        )  # fmt: skip
        wait_port(port)

    def pids(self) -> dict[str, list[int]]:
        """Each role's processes (children included), and the database's backends."""
        import psutil

        found = {}
        for role, proc in self.procs.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                parent = psutil.Process(proc.pid)
                found[role] = [parent.pid, *(p.pid for p in parent.children(recursive=True))]
        name = urlparse(self.db_url).path.lstrip("/")
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
        found["postgres"] = [pid for (pid,) in rows]
        return found

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def prepare(log_prefix: str = "") -> Stack:
    """A migrated throwaway database and an empty Redis database, one MLLP channel "bench"
    delivering FHIR to the sink; nothing started yet (``Stack.stop`` stops what was)."""
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
    return Stack(db_url, redis_url, env, mllp_port, sink_port, log_prefix)


class CpuMeter:
    """CPU time each role spends from ``start`` to ``stop``, read every half second (a database
    backend or a worker child may end meanwhile: its last reading counts)."""

    def __init__(self, stack: Stack, **others: int) -> None:
        self.stack, self.others = stack, others
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CpuMeter:
        self._read(self.first)
        self.last.update(self.first)
        self.thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.thread.join()
        self._read(self.last)
        spent: dict[str, float] = {}
        for (role, pid), seconds in self.last.items():
            spent[role] = spent.get(role, 0.0) + seconds - self.first.get((role, pid), 0.0)
        return spent

    def _run(self) -> None:
        while not self.done.wait(0.5):
            self._read(self.last)

    def _read(self, into: dict) -> None:
        pids = self.stack.pids()
        pids.update({role: [pid] for role, pid in self.others.items()})
        for role, found in pids.items():
            for pid in found:
                seconds = _cpu(pid)
                if seconds:
                    into[role, pid] = seconds


def offer(loadgen, stack: Stack, rate: float, seconds: float, prefix: str) -> dict:
    """Offer ``rate`` msg/s for ``seconds``; what was sent, and what was delivered once the
    pipeline had filled (after SETTLE_S; the backlog is drained after the window)."""
    from bench import load

    connections = max(8, int(rate // 100))  # each waits for its ACK: enough of them to keep up
    start = time.time()
    sent = loadgen.submit(load.paced, stack.mllp_port, rate, seconds, prefix, connections).result()
    end = time.time()
    delivered = _delivered_between(stack.db_url, start + SETTLE_S, end)
    _wait_drained(stack.db_url, 180)
    return {
        "offered": rate,
        "sent_per_s": sent["messages"] / (end - start),
        "delivered_per_s": delivered / (end - start - SETTLE_S),
    }


def kept_up(step: dict) -> bool:
    return (
        step["sent_per_s"] >= KEPT_UP * step["offered"]
        and step["delivered_per_s"] >= KEPT_UP * step["sent_per_s"]
    )


def main() -> None:
    stack = prepare()
    figures: dict = {}
    try:
        stack.start_listener()
        from bench import load

        with ProcessPoolExecutor(1) as loadgen:
            loadgen.submit(load.flood, stack.mllp_port, 2, 1, "warm").result()
            ingest = loadgen.submit(load.flood, stack.mllp_port, 16, INGEST_S, "in").result()
            print(
                f"ingest, 16 connections: {ingest['messages']} messages in {ingest['seconds']:.1f} s "
                f"= {ingest['per_s']:.0f} msg/s (committed before each ACK)"
            )
            figures["ingest_msgs_per_s"] = round(ingest["per_s"], 1)
            acks = loadgen.submit(load.paced, stack.mllp_port, 100, ACK_S, "ack").result()
            acks = acks["latencies_ms"]
            figures.update(
                ack_p50_ms=pct(acks, 0.50), ack_p95_ms=pct(acks, 0.95), ack_p99_ms=pct(acks, 0.99)
            )
            print(
                f"ACK latency, 1 connection at 100 msg/s ({len(acks)} messages): p50 {figures['ack_p50_ms']} ms, "
                f"p95 {figures['ack_p95_ms']} ms, p99 {figures['ack_p99_ms']} ms"
            )

            _reset_traffic(stack.db_url, stack.redis_url)
            stack.start_workers()
            time.sleep(3)
            # first tasks, connections, caches
            loadgen.submit(load.paced, stack.mllp_port, 200, 2, "warm", 4).result()
            _wait_drained(stack.db_url, 60)
            figures.update(latency(loadgen, stack))
            figures.update(throughput(loadgen, stack))
            figures["worker_rss_mb"] = round(
                sum(_tree_rss_mb(stack.procs[r].pid) for r in ("worker", "deliver")), 1
            )
            print(f"worker RSS (process and deliver workers): {figures['worker_rss_mb']} MB")
    finally:
        stack.stop()
    print("BENCH " + json.dumps(figures))


def latency(loadgen, stack: Stack) -> dict:
    from bench import load

    t0 = time.time()
    loadgen.submit(load.paced, stack.mllp_port, 200, E2E_LATENCY_S, "lat", 4).result()
    _wait_drained(stack.db_url, 120)
    lat = _latencies(stack.db_url, t0)
    figures = {"e2e_p50_ms": pct(lat, 0.5), "e2e_p95_ms": pct(lat, 0.95)}
    print(
        f"end to end at 200 msg/s ({len(lat)} delivered): p50 {figures['e2e_p50_ms']} ms, "
        f"p95 {figures['e2e_p95_ms']} ms (received → delivered)"
    )
    print(
        "  where it goes, p50/p95 ms: "
        + ", ".join(
            f"{hop} {pct(ms, 0.5)}/{pct(ms, 0.95)}" for hop, ms in _hops(stack.db_url, t0).items()
        )
    )
    return figures


def _hops(db_url: str, since: float) -> dict[str, list[float]]:
    """The hops of received → delivered: to the process claim (queue wait), claim → send
    started (converting, committing, the deliver queue), the send, send → settled."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM m.processed_at - m.received_at) * 1000,"
            " extract(epoch FROM a.started_at - m.processed_at) * 1000, a.duration_ms,"
            " extract(epoch FROM d.delivered_at - a.started_at) * 1000 - a.duration_ms"
            " FROM channels_app_delivery d JOIN channels_app_message m ON m.id = d.message_id"
            " JOIN channels_app_attempt a ON a.delivery_id = d.id"
            " WHERE d.status = 'DELIVERED' AND m.received_at >= to_timestamp(%s)",
            (since,),
        ).fetchall()
    names = ("to process claim", "claim to send", "send", "send to settled")
    return {name: [float(r[i]) for r in rows] for i, name in enumerate(names)}


def throughput(loadgen, stack: Stack) -> dict:
    """A rising offered load, step by step until the hub no longer keeps up; and what each
    process spent per delivered message over all of it."""
    steps = []
    meter = CpuMeter(stack, loadgen=loadgen.submit(os.getpid).result()).start()
    delivered_before = _delivered_count(stack.db_url)
    rows_before, tasks_before = _row_changes(stack.db_url), _task_counts(stack.redis_url)
    for n, rate in enumerate(E2E_RATES):
        step = offer(loadgen, stack, rate, E2E_S, f"tp{n}-")
        steps.append(step)
        print(
            f"end to end, offered {rate:.0f} msg/s for {E2E_S:.0f} s: sent {step['sent_per_s']:.0f}"
            f" msg/s, delivered {step['delivered_per_s']:.0f} msg/s"
            + ("" if kept_up(step) else " (saturated)")
        )
        if not kept_up(step):
            break
    spent, delivered = meter.stop(), _delivered_count(stack.db_url) - delivered_before
    time.sleep(1.5)  # table statistics and task counts are flushed within a second
    _print_database_work(
        _delta(_row_changes(stack.db_url), rows_before),
        _delta(_task_counts(stack.redis_url), tasks_before),
        delivered,
    )
    per_msg = {
        role: round(seconds * 1000 / max(1, delivered), 3) for role, seconds in spent.items()
    }
    total = round(sum(per_msg.values()), 3)
    print(
        f"CPU per delivered message ({delivered} messages): {total} ms = "
        + ", ".join(f"{role} {ms}" for role, ms in sorted(per_msg.items(), key=lambda i: -i[1]))
        + f" (2 cores: at most {2000 / total:.0f} msg/s)"
    )
    saturated = next((s for s in steps if not kept_up(s)), None)
    best = max(s["delivered_per_s"] for s in steps)
    print(
        f"end to end: {best:.0f} msg/s sustained, "
        + (
            f"saturated at an offered {saturated['offered']:.0f} msg/s"
            if saturated
            else f"kept up with every rate offered (up to {steps[-1]['offered']:.0f} msg/s)"
        )
    )
    return {
        "e2e_msgs_per_s": round(best, 1),
        "e2e_saturated_at_offered": saturated["offered"] if saturated else None,
        "e2e_cpu_ms_per_msg": total,
        "e2e_cpu_ms_per_msg_by_process": per_msg,
    }


def wait_port(port: int, timeout: float = 30) -> None:
    """Until something listens on 127.0.0.1:``port`` (RuntimeError after ``timeout``)."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def _reset_traffic(db_url: str, redis_url: str) -> None:
    import redis as redis_lib

    with psycopg.connect(db_url, autocommit=True) as conn:
        # CASCADE: whatever refers to messages (deliveries, attempts, replay items...) goes; keys
        # have no constraint to cascade by, so they are named.
        conn.execute(
            "TRUNCATE channels_app_message, channels_app_messagekey, channels_app_dedupeentry CASCADE"
        )
    redis_lib.Redis.from_url(redis_url).flushdb()


def _wait_drained(db_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (left,) = conn.execute(
                "SELECT (SELECT count(*) FROM channels_app_message WHERE status = 'RECEIVED')"
                " + (SELECT count(*) FROM channels_app_delivery"
                "    WHERE status IN ('PENDING', 'SENDING', 'RETRY', 'QUEUED'))"  # partial indexes
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


def _delivered_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM channels_app_delivery WHERE status = 'DELIVERED'"
        ).fetchone()
    return n


def _row_changes(db_url: str) -> dict[str, int]:
    """Rows inserted, updated (HOT or not) per hot table, and transactions, so far."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables"
            " WHERE relname IN ('channels_app_message', 'channels_app_delivery',"
            " 'channels_app_attempt', 'channels_app_messagekey', 'channels_app_dedupeentry')"
        ).fetchall()
        (commits,) = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    found = {"transactions": commits}
    for name, ins, upd, hot, dele in rows:
        table = name.removeprefix("channels_app_")
        found.update({f"{table} ins": ins, f"{table} upd": upd, f"{table} hot": hot})
        found[f"{table} del"] = dele
    return found


def _task_counts(redis_url: str) -> dict[str, int]:
    import redis as redis_lib

    raw = redis_lib.Redis.from_url(redis_url).hgetall("bench:counted")
    return {k.decode().removeprefix("channels_app.tasks."): int(v) for k, v in raw.items()}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def _print_database_work(rows: dict[str, int], tasks: dict[str, int], delivered: int) -> None:
    per = max(1, delivered)
    print(
        "database work per delivered message: "
        + ", ".join(f"{k} {v / per:.2f}" for k, v in sorted(rows.items()) if v)
    )
    for name in sorted({k.rsplit(":", 1)[0] for k in tasks}):
        n = max(1, tasks.get(f"{name}:tasks", 0))
        print(
            f"task {name}: {n} tasks ({n / per:.3f} per message), "
            f"{tasks.get(f'{name}:ids', 0) / n:.1f} ids and "
            f"{tasks.get(f'{name}:statements', 0) / n:.1f} statements per task, "
            f"{tasks.get(f'{name}:statements', 0) / per:.2f} statements per message"
        )


def _cpu(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def _tree_rss_mb(pid: int) -> float:
    import psutil

    parent = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20


if __name__ == "__main__":
    main()
