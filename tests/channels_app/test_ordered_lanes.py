"""Ordered lanes: deliveries with the same key (here the patient, PID-3.1) reach the destination
strictly in the order their messages were received, even when sends fail and are retried; a
failing head holds its own lane only, and other patients' messages keep flowing."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from adapters.codecs import hl7v2
from channels_app.models import Delivery
from channels_app.pipeline import lanes
from tests import factories
from tests.support import PeerServer, free_port, send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class LaneSink:
    """A FHIR endpoint that logs which message (Bundle.identifier = MSH-10) each request carried.

    ``refuse`` holds patient identifiers answered 503; ``fail_every`` answers every n-th request
    503 whoever it is for.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.log: list[tuple[str, int]] = []
        self.refuse: set[str] = set()
        self.fail_every = 0
        self.lock = threading.Lock()
        self.server: PeerServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self) -> LaneSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                control_id = json.loads(body)["identifier"]["value"]
                with sink.lock:
                    refused = any(mrn.encode() in body for mrn in sink.refuse)
                    nth = len(sink.log) + 1
                    flaky = sink.fail_every and nth % sink.fail_every == 0
                    status = 503 if refused or flaky else 200
                    sink.log.append((control_id, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = PeerServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def delivered(self) -> list[str]:
        with self.lock:
            return [control_id for control_id, status in self.log if status == 200]

    def tried(self) -> list[str]:
        with self.lock:
            return [control_id for control_id, _ in self.log]


@pytest.fixture
def sink():
    s = LaneSink().start()
    yield s
    s.stop()


@pytest.fixture
def ordered(mllp_port, listener, celery_worker, sink):
    channel = factories.channel(mllp_port)
    destination = factories.fhir_destination(
        channel,
        sink.url,
        ordering_key="PID-3.1",
        max_attempts=0,
        backoff_base_s=0.2,
        backoff_max_s=0.5,
        breaker_min_samples=0,  # failures here test lanes, not the breaker
    )
    listener(channel)
    return destination


def send_lane_messages(port: int, plan: list[tuple[str, int]]) -> None:
    for patient, n in plan:
        ack = send(port, factories.adt_a01(f"LANE-{patient}-{n:02d}", mrn=f"MRN{patient}"))
        assert b"MSA|AA" in ack


def lane(control_ids: list[str], patient: str) -> list[str]:
    return [c for c in control_ids if c.startswith(f"LANE-{patient}-")]


def test_each_patient_in_order_with_failures_injected(ordered, mllp_port, sink):
    sink.fail_every = 3  # a third of all requests fail and are retried
    plan = [(patient, n) for n in range(1, 7) for patient in "ABC"]  # interleaved
    send_lane_messages(mllp_port, plan)
    wait_for(lambda: len(sink.delivered()) == len(plan), timeout=60, what="all delivered")
    time.sleep(0.5)  # a duplicate or late send, if any, would land now
    delivered = sink.delivered()
    assert sorted(delivered) == sorted(f"LANE-{p}-{n:02d}" for p, n in plan)  # each once
    for patient in "ABC":
        assert lane(delivered, patient) == [f"LANE-{patient}-{n:02d}" for n in range(1, 7)]
        # nothing of a lane was even tried before its predecessor was delivered
        tried = lane(sink.tried(), patient)
        assert sorted(set(tried)) == [c for i, c in enumerate(tried) if c not in tried[:i]]
    assert any(status == 503 for _, status in sink.log)


def test_a_failing_head_holds_its_lane_only(ordered, mllp_port, sink):
    sink.refuse.add("MRNA")
    send_lane_messages(mllp_port, [("A", 1), ("A", 2), ("B", 1), ("B", 2), ("C", 1)])
    wait_for(
        lambda: sorted(sink.delivered()) == ["LANE-B-01", "LANE-B-02", "LANE-C-01"],
        what="the other patients delivered",
    )
    wait_for(lambda: sink.tried().count("LANE-A-01") >= 2, what="the head retried")
    assert lane(sink.delivered(), "B") == ["LANE-B-01", "LANE-B-02"]
    assert "LANE-A-02" not in sink.tried()  # never sent while its head fails
    second = Delivery.objects.get(message__control_id="LANE-A-02")
    assert (second.status, second.attempt_count) == ("PENDING", 0)

    sink.refuse.clear()
    wait_for(lambda: len(lane(sink.delivered(), "A")) == 2, what="the lane drained")
    assert lane(sink.delivered(), "A") == ["LANE-A-01", "LANE-A-02"]


def test_a_head_that_fails_for_good_lets_the_next_go_at_once(mllp_port, listener, celery_worker):
    sink = LaneSink().start()
    try:
        channel = factories.channel(mllp_port)
        factories.fhir_destination(
            channel, sink.url, ordering_key="PID-3.1", max_attempts=2, backoff_base_s=0.1
        )
        listener(channel)
        sink.refuse.add("LANE-A-01")  # this message only: its successors would be accepted
        send_lane_messages(mllp_port, [("A", 1), ("A", 2), ("A", 3)])
        # no sweeper runs in this test: the lane moves on by itself once its head gave up
        wait_for(lambda: sink.delivered() == ["LANE-A-02", "LANE-A-03"], what="the lane moved on")
        assert sink.tried() == ["LANE-A-01", "LANE-A-01", "LANE-A-02", "LANE-A-03"]
        head = Delivery.objects.get(message__control_id="LANE-A-01")
        assert (head.status, head.attempt_count) == ("FAILED", 2)
    finally:
        sink.stop()


def test_the_key_is_read_from_the_parsed_message():
    message = hl7v2.parse(factories.adt_a01("K-1", mrn="MRN42"))
    assert lanes.key_for(message, "PID-3.1") == "MRN42"
    assert lanes.key_for(message, "PID-3(2).1") == ""  # absent: not ordered
    assert lanes.key_for(message, "") == ""  # the destination is not ordered
    assert lanes.key_for(message, "not a path") == ""  # logged and ignored
    assert lanes.key_for(None, "PID-3.1") == ""  # not HL7 v2 (e.g. FHIR inbound)
