"""Real local peers for tests: an HTTP FHIR sink, an in-process MLLP listener, helpers to wait."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("HL7_CORPUS", REPO.parent / "shared" / "corpus"))
# CI must fail where a developer's laptop may skip: a green run there proves every test ran.
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def prerequisite_missing(reason: str) -> NoReturn:
    """Skip (saying why) on a laptop; fail in CI, where a missing prerequisite is a broken run."""
    import pytest

    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_corpus() -> Path:
    """The shared HL7 corpus, or the test stops here (see ``prerequisite_missing``)."""
    if not CORPUS.is_dir():
        prerequisite_missing(f"HL7 corpus not found at {CORPUS} (set HL7_CORPUS)")
    return CORPUS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class PeerServer(ThreadingHTTPServer):
    """A local HTTP peer that takes a burst as a real server does. socketserver's listen backlog
    of 5 overflowed under a batch of parallel sends on a loaded machine, and the kernel reset the
    connections that did not fit: a failure of the test's peer, not of the hub."""

    request_queue_size = 128
    daemon_threads = True


class FhirSink:
    """A FHIR-server stand-in that counts effects by Idempotency-Key, as a real server would.

    ``fail_next(n, status)`` answers the next n requests with ``status``; ``hold_s`` delays every
    answer (to kill a worker mid-send); ``stop()``/``start()`` make the port refuse connections.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[dict] = []
        self.effects: Counter[str] = Counter()
        self.failures: list[int] = []
        self.hold_s = 0.0
        self.lock = threading.Lock()
        self.server: PeerServer | None = None
        self.errors: list[BaseException] = []  # raised by the request handler; fail at stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def fail_next(self, n: int, status: int = 503) -> None:
        with self.lock:
            self.failures += [status] * n

    def next_status(self) -> int:
        """The status of the request being answered (called under ``lock``)."""
        return self.failures.pop(0) if self.failures else 200

    def accepted(self, key: str, body: bytes) -> None:
        """A request was answered 200 (called under ``lock``); subclasses keep more."""

    def outcome(self, status: int, body: bytes) -> dict:
        """The OperationOutcome a failed request is answered with; subclasses say more."""
        issue = {"severity": "error", "code": "transient", "diagnostics": f"sink says {status}"}
        return {"resourceType": "OperationOutcome", "issue": [issue]}

    def start(self) -> FhirSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the client died mid-request: nothing to apply
                    self.close_connection = True
                    return
                key = self.headers.get("Idempotency-Key", "")
                with sink.lock:
                    status = sink.next_status()
                    sink.requests.append(
                        {
                            "key": key,
                            "body": body,
                            "status": status,
                            "path": self.path,
                            "authorization": self.headers.get("Authorization"),
                            "api_key": self.headers.get("X-Api-Key"),
                        }
                    )
                if sink.hold_s:
                    time.sleep(sink.hold_s)
                if status == 200:
                    with sink.lock:
                        sink.effects[key] += 0 if sink.effects[key] else 1
                        sink.accepted(key, body)
                    reply = {"resourceType": "Bundle", "type": "transaction-response", "entry": []}
                else:
                    reply = sink.outcome(status, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = PeerServer(("127.0.0.1", self.port), Handler)
        self.server.handle_error = self.handler_failed
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def handler_failed(self, request, client_address) -> None:
        """The request handler raised: kept, and raised by ``stop()``. A client that hung up
        (a timeout being tested) is not the handler's failure."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        with self.lock:
            self.errors.append(sys.exc_info()[1])

    def stop(self) -> None:
        """Refuse connections from now on; a failure of the handler so far fails the test."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.errors:
            errors, self.errors = self.errors, []
            raise AssertionError(f"the FHIR sink's handler failed:\n{_formatted(errors[0])}")

    def bundles(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests if r["status"] == 200]


class PatientNamingSink(FhirSink):
    """A FHIR server that refuses a patient and says whom, unquoted, as real servers do: name,
    record number, birth date, city and phone in ``diagnostics``. ``refuse_every`` answers every
    n-th request 400 (1: all of them); ``fail_next`` still comes first."""

    def __init__(self, port: int | None = None, *, refuse_every: int = 0) -> None:
        super().__init__(port)
        self.refuse_every = refuse_every
        self.answered = 0

    def next_status(self) -> int:
        self.answered += 1
        if self.failures:
            return self.failures.pop(0)
        return 400 if self.refuse_every and self.answered % self.refuse_every == 0 else 200

    def outcome(self, status: int, body: bytes) -> dict:
        resources = [e.get("resource") or {} for e in json.loads(body).get("entry", [])]
        patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
        issue = {
            "severity": "error",
            "code": "duplicate",
            "diagnostics": f"Patient {_who(patient)} rejected: duplicate record",
            "expression": ["Patient.identifier[0]"],
        }
        return {"resourceType": "OperationOutcome", "issue": [issue]}


def _who(patient: dict) -> str:
    name = (patient.get("name") or [{}])[0]
    given = " ".join(name.get("given") or [])
    mrn = ((patient.get("identifier") or [{}])[0]).get("value", "")
    city = ((patient.get("address") or [{}])[0]).get("city", "")
    phone = ((patient.get("telecom") or [{}])[0]).get("value", "")
    born = patient.get("birthDate", "")
    return f"{name.get('family', '')} {given} (MRN {mrn}, born {born}, {city}, tel {phone})"


class IdempotentSink(FhirSink):
    """A FHIR server that applies each Idempotency-Key once and tells which message it carried.

    The fault suite asks it: which messages (MSH-10, from the Bundle identifier) had an effect,
    how many distinct keys each had (more than one is a duplicate the key could not absorb), and
    how many repeats a key absorbed. ``error_rate`` answers that share of requests 503 (seeded).
    """

    def __init__(self, port: int | None = None, *, error_rate: float = 0.0, seed: int = 6) -> None:
        super().__init__(port)
        self.error_rate = error_rate
        self.rng = random.Random(seed)
        self.control_id_of: dict[str, str] = {}  # key -> MSH-10 of its first accepted body
        self.repeats: Counter[str] = Counter()  # key -> accepted again after its effect

    def start(self) -> IdempotentSink:
        super().start()
        server, self.connections = self.server, set()
        accept = server.process_request

        def process_request(request, client_address):
            self.connections.add(request)
            accept(request, client_address)

        server.process_request = process_request
        return self

    def stop(self) -> None:
        """Down for everyone: kept-alive connections are cut too, not only new ones refused."""
        super().stop()
        for sock in getattr(self, "connections", ()):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.connections = set()

    def handler_failed(self, request, client_address) -> None:
        """A client killed mid-request (the point of some scenarios) is not the sink's error."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handler_failed(request, client_address)

    def next_status(self) -> int:
        status = super().next_status()
        if status == 200 and self.error_rate and self.rng.random() < self.error_rate:
            return 503
        return status

    def accepted(self, key: str, body: bytes) -> None:
        if key in self.control_id_of:
            self.repeats[key] += 1
            return
        try:
            self.control_id_of[key] = json.loads(body)["identifier"]["value"]
        except (ValueError, KeyError, TypeError):
            self.control_id_of[key] = f"?{key}"

    def effects_by_control_id(self) -> Counter[str]:
        """How many distinct effects each message had: 1 is right, 2 or more a duplicate."""
        with self.lock:
            return Counter(self.control_id_of.values())

    def status_counts(self) -> Counter[int]:
        with self.lock:
            return Counter(r["status"] for r in self.requests)


class ListenerThread:
    """The production MLLP listeners and file pickups (`run_listeners`' serve()) on their own
    event loop thread: for the sources given, or (``follow``) for the enabled channels as the
    configuration changes, as `run_listeners` runs them."""

    def __init__(self, specs, conninfo: str, pickups=(), *, follow: bool = False) -> None:
        self.specs = specs
        self.pickups = pickups
        self.conninfo = conninfo
        self.follow = follow
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def _run(self) -> None:
        from channels_app.management.commands.run_listeners import serve

        asyncio.set_event_loop(self.loop)

        async def main():
            self.stop_event = asyncio.Event()
            self.loop.call_soon(self.ready.set)
            await serve(
                self.specs, self.conninfo, self.stop_event, self.pickups, follow=self.follow
            )

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by start() or stop()
            self.error = exc
            self.ready.set()
            self._end_orphans()

    def _end_orphans(self) -> None:
        """After a crash, end the tasks serve() left behind (its committer holds a database
        connection), rather than leave them to the garbage collector at an arbitrary moment."""
        orphans = asyncio.all_tasks(self.loop)
        for task in orphans:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*orphans, return_exceptions=True))

    def start(self) -> ListenerThread:
        self.thread.start()
        self.ready.wait(10)
        for spec in self.specs:
            wait_for(
                lambda spec=spec: port_open(spec.port), timeout=10, what=f"listener on {spec.port}"
            )
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        """Stop the listener; a crash it had while serving fails the test here."""
        if self.stop_event is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)
        if self.error:
            raise AssertionError(f"the listener crashed while serving:\n{_formatted(self.error)}")
        assert not self.thread.is_alive(), "the listener did not stop within 10 s"


def _formatted(error: BaseException) -> str:
    """The error with its traceback, as text: raised ``from`` it, pytest would format its frames
    from a helper thread's stack, which the interpreter has already unwound."""
    return "".join(traceback.format_exception(error))


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def database_url_for_processes() -> str:
    """The URL of the test database, for processes the test starts (workers, listeners)."""
    from urllib.parse import quote

    from django.db import connection

    s = connection.settings_dict
    auth = quote(s["USER"] or "postgres") + (f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else "")
    host = s["HOST"] or "localhost"
    if host.startswith("/"):
        return f"postgresql://{auth}@/{s['NAME']}?host={host}"
    return f"postgresql://{auth}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


@contextlib.contextmanager
def threaded_worker(concurrency: int = 4):
    """A real Celery worker in this process (threads pool), consuming every queue.

    Its threads keep their database connections, as production workers do; they are ended
    afterwards so the test database can be flushed and dropped.
    """
    from celery.contrib.testing.worker import start_worker

    from console.celery import app

    with start_worker(
        app,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,
        queues=["default", "process", "deliver"],
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as worker:
        yield worker
    end_other_sessions()


def end_other_sessions() -> None:
    """End the test database's sessions other threads left open, so it can be dropped."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name NOT LIKE 'pg_%%'"
        )


@contextlib.contextmanager
def daphne_server():
    """daphne serving ``console.asgi`` as production does, on the test database; yields its URL."""
    import signal
    import subprocess
    import urllib.request

    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url_for_processes(), "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        + ["console.asgi:application"],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, f"daphne exited with {proc.returncode}"
        try:
            return urllib.request.urlopen(f"{url}/login/", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout=30, what="daphne to serve the console")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def send(port: int, raw: bytes) -> bytes:
    """Send one message over a fresh MLLP connection and return the ACK."""
    from adapters.transports.mllp import MLLPClient

    with MLLPClient("127.0.0.1", port) as client:
        return client.send(raw)


def signed_in(user):
    """A test client with ``user`` signed in."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@contextlib.contextmanager
def inbound_client(base_url: str, account: str):
    """An HTTP client for HTTP inbound, signed in as service account ``account`` (an operator
    token valid for a day)."""
    from datetime import timedelta

    import httpx

    from console import tokens
    from console.roles import Role

    sender = tokens.issue(
        tokens.service_account(account), Role.OPERATOR, lifetime=timedelta(days=1)
    )
    auth = {"Authorization": f"Bearer {sender.secret}"}
    with httpx.Client(base_url=base_url, headers=auth, timeout=10) as client:
        yield client


def post_inbound(client, channel, body: bytes, content_type: str, **headers):
    """POST ``body`` to the channel's HTTP inbound endpoint."""
    return client.post(
        f"/api/v1/channels/{channel.pk}/messages/",
        content=body,
        headers={"Content-Type": content_type, **headers},
    )


def is_delivered(message_id: int) -> bool:
    from channels_app.models import Delivery

    return Delivery.objects.filter(message_id=message_id, status="DELIVERED").exists()


def publish_in_browser(page, channel_id: int, note: str = "") -> None:
    """From the Channels page: review the channel's draft, publish it (with ``note``), and come
    back to the channel's card: the console's one way to put an edit live."""
    from playwright.sync_api import expect

    page.locator(f"#channel-{channel_id} [data-action=review-draft]").click()
    expect(page.get_by_role("heading", name="Review & publish the draft")).to_be_visible()
    if note:
        page.get_by_label("Note for this version").fill(note)
    page.locator("[data-action=publish]").click()
    expect(page.locator("[data-flash]")).to_contain_text("published as version")
    page.locator(f".breadcrumb a[href$='#channel-{channel_id}']").click()
