"""The FHIR REST transport against a real local HTTP server: what is retryable and what is not."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from adapters.registry import ConfigError, build_transport
from adapters.transports.base import Payload, TransportError
from tests.adapters.transports.http_peer import HttpPeer, Reply
from tests.support import FhirSink, free_port

PAYLOAD = Payload(
    b'{"resourceType":"Bundle","type":"transaction"}', "application/fhir+json", "key-1", "m1"
)


@pytest.fixture
def sink():
    s = FhirSink().start()
    yield s
    s.stop()


def transport(url: str, **config):
    return build_transport("fhir_rest", {"base_url": url, **config})


def test_posts_the_bundle_with_its_idempotency_key_and_summarizes_the_answer(sink):
    result = transport(sink.url).send(PAYLOAD, timeout=5)
    assert result.status_code == 200 and result.summary.startswith("Bundle transaction-response")
    [request] = sink.requests
    assert request["key"] == "key-1" and json.loads(request["body"])["type"] == "transaction"
    assert request["path"] == "/fhir/"


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (404, True), (422, True), (408, False), (429, False), (500, False), (503, False)],
)
def test_4xx_is_permanent_except_408_and_429(sink, status, permanent):
    sink.fail_next(1, status)
    with pytest.raises(TransportError) as caught:
        transport(sink.url).send(PAYLOAD, timeout=5)
    assert caught.value.permanent is permanent and caught.value.status_code == status
    assert f"sink says {status}" in str(caught.value)  # the OperationOutcome's diagnostics


def test_refused_connection_is_transient():
    with pytest.raises(TransportError) as caught:
        transport(f"http://127.0.0.1:{free_port()}/fhir").send(PAYLOAD, timeout=2)
    assert not caught.value.permanent and "cannot reach" in str(caught.value)


def test_no_answer_within_the_timeout_is_transient():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        with pytest.raises(TransportError) as caught:
            transport(f"http://127.0.0.1:{server.getsockname()[1]}/").send(PAYLOAD, timeout=0.5)
        assert not caught.value.permanent and "within 0.5 s" in str(caught.value)
    finally:
        server.close()


def test_bearer_token_is_sent_and_never_shown(sink):
    t = transport(sink.url, bearer_token="s3cret-token")
    assert "s3cret-token" not in repr(t.config) and "s3cret-token" not in str(t.config)
    t.send(PAYLOAD, timeout=5)


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="base_url"):
        build_transport("fhir_rest", {"base_url": "not a url"})


def test_a_deeply_nested_answer_is_not_json_to_read_not_a_crash():
    deep = b'{"resourceType": "OperationOutcome", "issue": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    peer = HttpPeer({"/": lambda request: Reply(400, deep)}).start()
    try:
        with pytest.raises(TransportError) as caught:
            transport(peer.url().rstrip("/") + "/fhir").send(PAYLOAD, timeout=5)
    finally:
        peer.stop()
    assert caught.value.permanent and caught.value.status_code == 400
