"""Delivery under load: throughput to a local HTTP sink, draining a backlog, database cost.

Figures:
- deliver_msgs_per_s: processed messages (inserted in bulk) delivered to the local HTTP sink by
  one deliver worker with 4 threads (BENCH_DELIVER_THREADS), enqueue → all DELIVERED;
- drain_10k_s: 10,000 deliveries tried while the sink is down (retrying, breaker open), then the
  sink comes back: seconds from its return until every one is DELIVERED (BENCH_DRAIN_N);
  drain_10k_no_breaker_s the same with the destination's breaker off (retries alone);
- deliver_queries_per_msg: SQL statements per delivered message, counted around
  ``channels_app.pipeline.deliver.deliver`` for a batch of 50 (target ≤ 4 per batch).
Uses its own database (<name>_bench_delivery) and Redis db 2 (BENCH_DELIVERY_REDIS_DB) on the configured servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
THROUGHPUT_N = int(os.environ.get("BENCH_DELIVERY_N", 5000))
DRAIN_N = int(os.environ.get("BENCH_DRAIN_N", 10_000))
DRAIN_TIMEOUT_S = float(os.environ.get("BENCH_DRAIN_TIMEOUT_S", 300))
THREADS = os.environ.get("BENCH_DELIVER_THREADS", "4")
# The destination as an operator would set it for a flaky peer: quick retries, short cooldown.
POLICY = {
    "timeout_s": 5.0,
    "max_attempts": 0,
    "backoff_base_s": 1.0,
    "backoff_max_s": 5.0,
    "breaker_cooldown_s": 2.0,
}
ADT = (
    b"MSH|^~\\&|BENCH|HOSP|HUB|HUB|20240102030405-0500||ADT^A01^ADT_A01|TEMPLATE|P|2.5.1\r"
    b"EVN|A01|20240102030405-0500\r"
    b"PID|1||MRN1^^^HOSP^MR||DOE^JANE^Q||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701^USA||555-1234\r"
    b"PV1|1|I|WARD1^101^A^HOSP||||1234^WELBY^MARCUS^^^DR|||MED||||||||V1|||||||||||||||||||||||||20240102030000-0500\r"
)


def bench_urls() -> tuple[str, str]:
    """A fresh database next to the configured one, and Redis db 2."""
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        from console import embedded

        os.environ.setdefault("DATABASE_URL", embedded.postgres_url())
        os.environ.setdefault("REDIS_URL", embedded.redis_url())
    # Throwaway data, sealed at rest as production's is (settings refuse to start otherwise).
    if not os.environ.get("HUB_STORE_IN_CLEAR"):
        os.environ.setdefault("HUB_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    db = urlparse(os.environ["DATABASE_URL"])
    name = (db.path.lstrip("/") or "postgres") + "_bench_delivery"
    with psycopg.connect(urlunparse(db._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    redis = urlparse(os.environ["REDIS_URL"])
    redis_db = os.environ.get("BENCH_DELIVERY_REDIS_DB", "2")
    return urlunparse(db._replace(path=f"/{name}")), urlunparse(redis._replace(path=f"/{redis_db}"))


class Procs:
    """The sink and the deliver worker, each logging to var/bench/delivery-<role>.log."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.logs = ROOT / "var" / "bench"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, subprocess.Popen] = {}

    def spawn(self, role: str, *cmd: str) -> subprocess.Popen:
        log = open(self.logs / f"delivery-{role}.log", "w")  # noqa: SIM115 (as long as the process)
        self.running[role] = subprocess.Popen(
            [sys.executable, *cmd],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self.running[role]

    def sink(self, port: int) -> None:
        self.spawn("sink", "-m", "bench.sink", str(port))
        _wait(lambda: _port_open(port), 10, "the sink")

    def worker(self) -> None:
        proc = self.spawn(
            "worker",
            *("-m", "celery", "-A", "console", "worker", "-n", "deliver@%h", "-l", "INFO"),
            *("-Q", "deliver,default", "-P", "threads", "-c", THREADS),
            *("--without-gossip", "--without-mingle"),
        )
        log = self.logs / "delivery-worker.log"
        _wait(lambda: b" ready." in log.read_bytes() or proc.poll() is not None, 60, "worker")

    def beat(self) -> None:
        self.spawn(
            "beat",
            "-m",
            "celery",
            "-A",
            "console",
            "beat",
            "-l",
            "WARNING",
            "-s",
            str(self.logs / "delivery-beat-schedule"),
        )

    def stop(self, role: str) -> None:
        proc = self.running.pop(role)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for role in list(self.running):
            self.stop(role)


def _port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def setup(sink_port: int):
    """The channel, its sink destination, and one processed message to copy in bulk."""
    from channels_app.models import Channel, Destination, Message
    from channels_app.pipeline.process import process_messages

    channel = Channel.objects.create(name="bench delivery", source_config={"port": 1})
    destination = Destination.objects.create(
        channel=channel,
        name="sink",
        transport=Destination.Transport.FHIR_REST,
        config={"base_url": f"http://127.0.0.1:{sink_port}/fhir"},
        **POLICY,
    )
    template = Message.objects.create(channel=channel, raw=ADT, size=len(ADT))
    process_messages([template.id])
    template.refresh_from_db()
    assert template.status == Message.Status.PROCESSED, template.error_detail
    return destination, template


def queue(destination, template, n: int, prefix: str) -> list[int]:
    """``n`` processed messages, each with one PENDING delivery, as process would leave them."""
    from django.db import transaction
    from django.utils import timezone

    from channels_app.models import Delivery, Message

    now = timezone.now()
    with transaction.atomic():
        messages = Message.objects.bulk_create(
            [
                Message(
                    channel_id=template.channel_id,
                    status=Message.Status.PROCESSED,
                    message_type=template.message_type,
                    control_id=f"{prefix}{i}",
                    raw=template.raw,
                    size=template.size,
                    canonical=template.canonical,
                    processed_at=now,
                )
                for i in range(n)
            ],
            batch_size=2000,
        )
        deliveries = Delivery.objects.bulk_create(
            [
                Delivery(message_id=m.id, destination=destination, next_attempt_at=now)
                for m in messages
            ],
            batch_size=2000,
        )
    return [d.id for d in deliveries]


def delivered(ids: list[int]) -> int:
    from channels_app.models import Delivery

    return Delivery.objects.filter(id__in=ids, status=Delivery.Status.DELIVERED).count()


def wait_delivered(ids: list[int], timeout: float, start: float) -> float:
    """Seconds from ``start`` until every delivery in ``ids`` is DELIVERED."""
    while delivered(ids) < len(ids):
        if time.monotonic() - start > timeout:
            print(
                f"warning: {len(ids) - delivered(ids)} of {len(ids)} not delivered in {timeout} s"
            )
            break
        time.sleep(0.1)
    return time.monotonic() - start


def queries_per_message(destination, template) -> tuple[float, int]:
    """Statements per delivered message for one batch of 50, counted in this process."""
    from django.db import connection

    from channels_app.pipeline import deliver as stage

    stage.deliver(queue(destination, template, 5, "warm"))  # transports built, caches warm
    ids = queue(destination, template, 50, "q")
    statements: list[str] = []

    def count(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        batch = stage.deliver(ids)
    outcomes = getattr(batch, "outcomes", batch)  # a Batch, or a bare list of outcomes
    sent = sum(1 for o in outcomes if o.status == "DELIVERED")
    return len(statements) / max(1, sent), len(statements)


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

    from tests.support import free_port

    redis_lib.Redis.from_url(redis_url).flushdb()
    sink_port = free_port()
    procs = Procs(env)
    figures: dict = {}
    try:
        procs.sink(sink_port)
        destination, template = setup(sink_port)
        per_msg, total = queries_per_message(destination, template)
        figures["deliver_queries_per_msg"] = round(per_msg, 3)
        print(
            f"database cost: {total} statements for a batch of 50 deliveries "
            f"= {per_msg:.2f} per delivered message"
        )

        procs.worker()
        procs.beat()  # the sweeper, as in production
        warm = queue(destination, template, 20, "warm")  # connections, first tasks
        enqueue_deliveries(warm)
        wait_delivered(warm, 60, time.monotonic())
        ids = queue(destination, template, THROUGHPUT_N, "tp")
        connection.close()
        start = time.monotonic()
        enqueue_deliveries(ids)
        took = wait_delivered(ids, 300, start)
        figures["deliver_msgs_per_s"] = round(len(ids) / took, 1)
        print(
            f"delivery, 1 worker x {THREADS} threads: {len(ids)} in {took:.1f} s "
            f"= {figures['deliver_msgs_per_s']} msg/s to the local HTTP sink"
        )

        figures["drain_10k_s"] = drain(procs, destination, template, sink_port, "dr")
        no_breaker = copy_destination(destination, breaker_min_samples=0)
        figures["drain_10k_no_breaker_s"] = drain(procs, no_breaker, template, sink_port, "nb")
    finally:
        procs.stop_all()
        connection.close()
    print("BENCH " + json.dumps(figures))


def drain(procs: Procs, destination, template, sink_port: int, prefix: str) -> float:
    """DRAIN_N deliveries tried while the sink is down; seconds from its return to all sent."""
    procs.stop("sink")
    ids = queue(destination, template, DRAIN_N, prefix)
    enqueue_deliveries(ids)
    _wait(lambda: _tried(ids) == len(ids), 300, "every delivery to be tried once")
    time.sleep(3)  # down a while longer: the backlog retries, or waits on the open breaker
    procs.sink(sink_port)
    took = wait_delivered(ids, DRAIN_TIMEOUT_S, time.monotonic())
    breaker = (
        "breaker off"
        if not destination.breaker_min_samples
        else (f"breaker cooldown {destination.breaker_cooldown_s} s")
    )
    print(
        f"drain: {len(ids)} deliveries that met a dead sink (backoff {destination.backoff_base_s}"
        f"–{destination.backoff_max_s} s, {breaker}) all delivered {took:.1f} s after it was back"
    )
    return round(took, 2)


def copy_destination(destination, **changes):
    from channels_app.models import Destination

    return Destination.objects.create(
        channel_id=destination.channel_id,
        name=f"sink ({', '.join(changes)})",
        transport=destination.transport,
        config=destination.config,
        **{**POLICY, **changes},
    )


def enqueue_deliveries(ids: list[int]) -> None:
    from channels_app.tasks import enqueue_deliveries as enqueue

    enqueue(ids)


def _tried(ids: list[int]) -> int:
    from channels_app.models import Delivery

    return Delivery.objects.filter(id__in=ids).exclude(status=Delivery.Status.PENDING).count()


if __name__ == "__main__":
    main()
