"""A hub made of real processes for the fault suite, the traffic it is sent, and the figures.

Listener, Celery workers and beat run as subprocesses pointed at the scenario's database and its
own Redis, so a scenario can kill, flush or restart any of them; the destination is an
`IdempotentSink` in the test process. Figures are judged at the sink: every message the sender saw
acknowledged (AA) must have had exactly one effect there.
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
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from tests.faults.services import terminate
from tests.support import REPO, free_port, wait_for

VAR = REPO / "var" / "faults"
# Fast sweeps and short leases: recovery in seconds, not the production minutes.
HUB_ENV = {
    "LOG_LEVEL": "WARNING",
    "SWEEP_EVERY_S": "1",
    "SWEEP_AFTER_S": "2",
    "CLAIM_MARGIN_S": "1",
}
# Retries fast and (almost) without end: a scenario ends drained, never FAILED.
DESTINATION = {
    "timeout_s": 2.0,
    "max_attempts": 1000,
    "backoff_base_s": 0.1,
    "backoff_max_s": 1.0,
    "breaker_cooldown_s": 1.0,
}
OPEN_WORK = """
SELECT (SELECT count(*) FROM channels_app_message WHERE status = 'RECEIVED'),
       (SELECT count(*) FROM channels_app_delivery WHERE status <> 'DELIVERED'),
       (SELECT count(*) FROM channels_app_delivery WHERE status = 'DELIVERED')
"""

WHEREABOUTS = """
SELECT m.control_id, m.id, m.status, d.id, d.status, d.attempt_count, d.next_attempt_at,
       (SELECT string_agg(a.outcome || ':' || left(a.error, 60), ' | ' ORDER BY a.id)
        FROM channels_app_attempt a WHERE a.delivery_id = d.id)
FROM channels_app_message m LEFT JOIN channels_app_delivery d ON d.message_id = m.id
WHERE m.control_id = ANY(%s) ORDER BY m.id
"""


def configure(name: str, port: int, destination: dict) -> str:
    """The scenario's channel (MLLP on ``port``) and its one destination (transport, config and
    policy in ``destination``, over the suite's defaults)."""
    from channels_app.models import Channel, Destination

    channel = Channel.objects.create(
        name=name, source_config={"host": "127.0.0.1", "port": port}, dedupe_window_s=3600
    )
    Destination.objects.create(
        channel=channel, name="idempotent sink", **{**DESTINATION, **destination}
    )
    return channel.name


class Processes:
    """The hub's processes; each logs to var/faults/<scenario>/<role>.log."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, tuple[str, ...]] = {}
        self.restarts: Counter[str] = Counter()
        self.killed: Counter[str] = Counter()  # by the scenario: the restarts it expects
        self._supervising = threading.Event()
        self.lock = threading.Lock()

    def supervise(self) -> None:
        """Restart a process that exits, as systemd (Restart=always) would; a scenario's figures
        show how often that was needed, and one that restarts what it did not kill fails."""
        self._supervising.set()
        threading.Thread(target=self._supervisor, daemon=True, name="supervisor").start()

    def _supervisor(self) -> None:
        while self._supervising.is_set():
            with self.lock:
                for role, proc in list(self.running.items()):
                    if proc.poll() is not None and self._supervising.is_set():
                        self.restarts[role] += 1
                        self.spawn(role, *self.commands[role])
            time.sleep(0.2)

    def spawn(self, role: str, *cmd: str) -> subprocess.Popen:
        self.commands[role] = cmd
        log = open(self.logs / f"{role}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(
            [sys.executable, *cmd],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.running[role] = proc
        return proc

    def listener(self, channel: str, port: int) -> subprocess.Popen:
        proc = self.spawn(
            "listener", "manage.py", "run_listeners", "--skip-checks", "--channel", channel
        )
        wait_for(lambda: _port_open(port) or proc.poll() is not None, timeout=30, what="listener")
        assert proc.poll() is None, self.tail("listener")
        return proc

    def worker(self, role: str = "worker", concurrency: int = 4, wait: bool = True):
        """A `celery worker` on every queue; threads, as the deliver workers run in production."""
        log = self.logs / f"{role}.log"
        seen = log.read_bytes().count(b" ready.") if log.exists() else 0
        proc = self.spawn(
            role,
            *("-m", "celery", "-A", "console", "worker", "-n", f"{role}@%h", "-l", "INFO"),
            *("-P", "threads", "-c", str(concurrency), "-Q", "default,process,deliver"),
            *("--without-gossip", "--without-mingle"),
        )
        if wait:
            wait_for(
                lambda: log.read_bytes().count(b" ready.") > seen or proc.poll() is not None,
                timeout=60,
                what=f"{role} ready",
            )
            assert proc.poll() is None, self.tail(role)
        return proc

    def beat(self) -> subprocess.Popen:
        schedule = self.logs / "beat-schedule"
        return self.spawn(
            "beat", "-m", "celery", "-A", "console", "beat", "-l", "WARNING", "-s", str(schedule)
        )

    def kill(self, role: str) -> None:
        """SIGKILL, no goodbye: what the OOM killer or a pulled plug does. The supervisor
        restarts it, as it would in production."""
        with self.lock:
            proc = self.running[role]
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            self.killed[role] += 1

    def unexpected_restarts(self) -> str:
        """Restarts other than of the processes the scenario killed, e.g. a listener that died
        when Redis did ("" when every restart was expected)."""
        if self.restarts == self.killed:
            return ""
        return f"{_restarts(self.restarts)} restarted; expected {_restarts(self.killed)}"

    def stop_all(self) -> None:
        self._supervising.clear()
        with self.lock:  # the supervisor is done with its round
            pass
        for role in list(self.running):
            terminate(self.running.pop(role), timeout=5)

    def log(self, role: str) -> str:
        path = self.logs / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, role: str, n: int = 30) -> str:
        lines = (self.logs / f"{role}.log").read_text(errors="replace").splitlines()
        return f"{role} log:\n" + "\n".join(lines[-n:])


def _restarts(counts: Counter[str]) -> str:
    return ", ".join(f"{role} x{n}" for role, n in sorted(counts.items())) or "none"


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def ack_code(ack: bytes) -> str:
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode("ascii", "replace")
    return "?"


@dataclass
class Sent:
    """What the sender saw: per message, its last answer; AA is a promise the hub must keep."""

    control_ids: list[str]
    acked: set[str] = field(default_factory=set)
    naks: int = 0  # AE/AR answers (retried with the same MSH-10)
    silences: int = 0  # no answer: refused, reset or timed out (retried with the same MSH-10)
    finished_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Traffic:
    """Messages sent from a few connections at a steady pace, each resent until AA or patience
    runs out, as a sender does after a NAK or a lost connection (MSH-10 stays the same)."""

    def __init__(
        self,
        port: int,
        messages: dict[str, bytes],
        *,
        connections: int = 4,
        rate: float = 100.0,
        patience_s: float = 60.0,
        ack_timeout_s: float = 5.0,
    ) -> None:
        self.port = port
        self.messages = messages
        self.connections = connections
        self.interval = connections / rate
        self.patience_s = patience_s
        self.ack_timeout_s = ack_timeout_s
        self.sent = Sent(list(messages))
        self._pool = ThreadPoolExecutor(connections, thread_name_prefix="sender")
        self._futures = []

    def start(self) -> Traffic:
        ids = list(self.messages)
        self._futures = [
            self._pool.submit(self._connection, ids[c :: self.connections])
            for c in range(self.connections)
        ]
        return self

    def wait(self, timeout: float = 120) -> Sent:
        for future in self._futures:
            future.result(timeout)
        self._pool.shutdown()
        self.sent.finished_at = time.monotonic()
        return self.sent

    def _connection(self, ids: list[str]) -> None:
        from adapters.transports.mllp import MLLPClient

        client = None
        next_due = time.monotonic()
        for control_id in ids:
            time.sleep(max(0.0, next_due - time.monotonic()))
            next_due += self.interval
            give_up = time.monotonic() + self.patience_s
            while time.monotonic() < give_up:
                try:
                    client = client or MLLPClient("127.0.0.1", self.port, self.ack_timeout_s)
                    code = ack_code(client.send(self.messages[control_id]))
                except OSError:
                    if client:
                        client.close()
                    client = None
                    with self.sent.lock:
                        self.sent.silences += 1
                    time.sleep(0.2)
                    continue
                if code == "AA":
                    with self.sent.lock:
                        self.sent.acked.add(control_id)
                    break
                with self.sent.lock:
                    self.sent.naks += 1
                time.sleep(0.2)
        if client:
            client.close()


@dataclass
class Figures:
    scenario: str
    sent: int
    acked: int
    delivered: int  # acknowledged messages with an effect at the sink
    duplicates: int  # extra effects: a message applied under more than one key
    lost: int  # acknowledged, never delivered
    drain_s: float  # from the fault's end (or the last send) to the last acked message delivered
    naks: int = 0
    silences: int = 0
    requests: int = 0  # requests the sink answered, any status
    absorbed: int = 0  # repeats of a key already applied (the idempotency key at work)
    retries: int = 0  # attempts that did not succeed (the hub saw the fault and tried again)
    unknown: int = 0  # effects for messages the sender never sent (must be 0)
    restarts: int = 0  # hub processes the supervisor restarted after they exited
    unexpected_restarts: str = ""  # restarts of processes the scenario did not kill
    notes: str = ""

    def assert_exactly_once(self, *, ingest_touched: bool = False) -> None:
        """Every acknowledged message had exactly one effect, and no hub process died of the
        fault. Where the fault left ingest alone, every message sent was acknowledged."""
        assert self.acked, f"{self.scenario}: nothing was acknowledged"
        if not ingest_touched:
            assert self.acked == self.sent, (
                f"{self.scenario}: {self.sent - self.acked} of {self.sent} never acknowledged"
            )
        assert self.lost == 0, f"{self.scenario}: {self.lost} acknowledged message(s) lost"
        assert self.duplicates == 0, f"{self.scenario}: {self.duplicates} duplicate effect(s)"
        assert self.unknown == 0, f"{self.scenario}: {self.unknown} effect(s) nobody sent"
        assert not self.unexpected_restarts, f"{self.scenario}: {self.unexpected_restarts}"


def record(figures: Figures) -> None:
    from tests.faults import report

    report.append(asdict(figures))


class FaultHub:
    """One scenario's hub: configure, start, send, break things, drain, judge."""

    def __init__(self, scenario: str, database_url: str, redis_url: str) -> None:
        self.scenario = scenario
        self.database_url = database_url
        self.redis_url = redis_url
        self.port = free_port()
        self.sink = None  # an IdempotentSink, or any peer with the same questions answered
        slug = "".join(c if c.isalnum() else "-" for c in scenario.lower()).strip("-")
        self.slug = slug
        env = {**os.environ, **HUB_ENV, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        env.pop("CELERY_BROKER_URL", None)
        self.processes = Processes(env, VAR / slug)
        for old in (VAR / slug).glob("*.log"):
            old.unlink()
        self.channel = ""
        self.traffic: Traffic | None = None

    def configure(self, sink, *, in_process: bool = True, **destination):
        """Create the channel and destination: through this process's ORM (the test database),
        or, for a database of the scenario's own, through a process pointed at it."""
        self.sink = sink
        if "transport" not in destination:
            destination.update(transport="fhir_rest", config={"base_url": sink.url})
        if in_process:
            self.channel = configure(self.slug, self.port, destination)
            return self
        script = (
            "import django, json, sys; django.setup(); from tests.faults.hub import configure;"
            " print(configure(*json.loads(sys.argv[1])))"
        )
        args = json.dumps([self.slug, self.port, destination])
        run = subprocess.run(
            [sys.executable, "-c", script, args],
            cwd=REPO,
            env={**self.processes.env, "DJANGO_SETTINGS_MODULE": "console.settings"},
            capture_output=True,
            text=True,
            check=True,
        )
        self.channel = run.stdout.strip().splitlines()[-1]
        return self

    def start(self, workers: int = 1, concurrency: int = 4) -> FaultHub:
        for n in range(workers):
            self.processes.worker(f"worker{n + 1}", concurrency)
        self.processes.beat()
        self.processes.listener(self.channel, self.port)
        self.processes.supervise()
        return self

    def send(self, n: int, patients: int = 97, **options) -> Traffic:
        """``n`` ADT messages (MSH-10 ``<SCENARIO>-<i>``, PID-3 ``M<i % patients>``)."""
        from tests import factories

        prefix = self.slug[:12].upper()
        messages = {
            f"{prefix}-{i:05d}": factories.adt_a01(f"{prefix}-{i:05d}", mrn=f"M{i % patients}")
            for i in range(n)
        }
        self.traffic = Traffic(self.port, messages, **options).start()
        return self.traffic

    def open_work(self) -> tuple[int, int, int]:
        """(messages still RECEIVED, deliveries not DELIVERED, deliveries DELIVERED)."""
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                return conn.execute(OPEN_WORK).fetchone()
        except psycopg.OperationalError:
            return (-1, -1, -1)

    def drain(
        self, since: float | None = None, timeout: float = 90, notes: str | Callable[[], str] = ""
    ) -> Figures:
        """Wait until every acknowledged message had its effect and no work is open, then judge.
        ``notes`` may be a function, called once the hub has drained."""
        sent = self.traffic.wait()
        since = since or sent.finished_at
        sink = self.sink

        def drained() -> bool:
            done = set(sink.effects_by_control_id())
            if not sent.acked <= done:
                return False
            received, open_deliveries, _ = self.open_work()
            return received == 0 and open_deliveries == 0

        with contextlib.suppress(AssertionError):  # judged below: what is missing shows as lost
            wait_for(drained, timeout=timeout, interval=0.1, what="the hub to drain")
        drain_s = max(0.0, time.monotonic() - since)
        time.sleep(1.0)  # a late duplicate (a redelivery after a lapsed claim) would show now
        effects = sink.effects_by_control_id()
        figures = Figures(
            scenario=self.scenario,
            sent=len(sent.control_ids),
            acked=len(sent.acked),
            delivered=len(sent.acked & set(effects)),
            duplicates=sum(n - 1 for n in effects.values()),
            lost=len(sent.acked - set(effects)),
            drain_s=round(drain_s, 2),
            naks=sent.naks,
            silences=sent.silences,
            requests=len(sink.requests),
            absorbed=sum(sink.repeats.values()),
            unknown=len(set(effects) - set(sent.control_ids)),
            retries=self.failed_attempts(),
            restarts=sum(self.processes.restarts.values()),
            unexpected_restarts=self.processes.unexpected_restarts(),
            notes=notes() if callable(notes) else notes,
        )
        if self.processes.restarts:
            restarts = _restarts(self.processes.restarts)
            figures.notes = f"{figures.notes}; restarted after exiting: {restarts}".lstrip("; ")
        if figures.lost:
            where = self.whereabouts(sorted(sent.acked - set(effects)))
            figures.notes = f"{figures.notes}; lost: {where}".lstrip("; ")
        record(figures)
        return figures

    def received_order(self) -> dict[str, int]:
        """MSH-10 -> the message id the hub gave it (ids follow the order of receipt)."""
        with psycopg.connect(self.database_url) as conn:
            return dict(conn.execute("SELECT control_id, id FROM channels_app_message"))

    def failed_attempts(self) -> int:
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                query = "SELECT count(*) FROM channels_app_attempt WHERE outcome <> 'SUCCESS'"
                return conn.execute(query).fetchone()[0]
        except psycopg.OperationalError:
            return -1

    def whereabouts(self, control_ids: list[str]) -> str:
        """Where the hub has the messages it lost track of: status, deliveries, attempts."""
        try:
            with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                rows = conn.execute(WHEREABOUTS, (control_ids[:5],)).fetchall()
        except psycopg.OperationalError as exc:
            return f"{control_ids[:5]} (database unreachable: {exc})"
        return (
            "; ".join(" ".join(str(v) for v in row) for row in rows) or f"{control_ids[:5]} nowhere"
        )

    def stop(self) -> None:
        self.processes.stop_all()
        if self.sink:
            self.sink.stop()
