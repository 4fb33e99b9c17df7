"""The webhook destination against a real local HTTP server."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading

import pytest

from adapters.registry import ConfigError, build_transport
from adapters.transports.base import Payload, TransportError
from tests.adapters.transports.http_peer import HttpPeer, Reply
from tests.support import free_port

BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:mrn", "value": "123"}],
                "name": [{"family": "Doe", "given": ["Jane"]}],
            }
        },
        {"resource": {"resourceType": "Observation", "code": {"coding": [{"code": "A"}]}}},
        {"resource": {"resourceType": "Observation", "code": {"coding": [{"code": "B"}]}}},
    ],
}
BODY = json.dumps(BUNDLE).encode()
PAYLOAD = Payload(BODY, "application/fhir+json", "key-1", "m1", None, 7)


@pytest.fixture
def server():
    peers = []

    def start(status: int = 200, body: bytes | dict = b"ok") -> HttpPeer:
        p = HttpPeer({"/": lambda r: Reply(status, body)}).start()
        peers.append(p)
        return p

    yield start
    for p in peers:
        p.stop()


def webhook(url: str, **config):
    return build_transport("webhook", {"url": url, **config})


def test_posts_the_canonical_bundle_byte_for_byte_with_the_idempotency_key(server):
    peer = server()
    result = webhook(peer.url("/hook"), headers={"X-Tenant": "north"}).send(PAYLOAD, timeout=5)
    [request] = peer.requests
    assert request.method == "POST" and request.path == "/hook" and request.body == BODY
    assert request.headers["Idempotency-Key"] == "key-1"
    assert request.headers["Content-Type"] == "application/fhir+json"
    assert request.headers["X-Tenant"] == "north"
    assert result.status_code == 200 and result.summary == "ok"
    assert result.request.startswith("POST http://127.0.0.1")


def test_put_when_configured(server):
    peer = server(204, b"")
    assert webhook(peer.url(), method="PUT").send(PAYLOAD, timeout=5).status_code == 204
    assert peer.requests[0].method == "PUT"


def test_template_values_are_fhirpath_over_the_bundle(server):
    peer = server()
    template = {
        "mrn": "=Bundle.entry.resource.ofType(Patient).identifier.value",
        "name": {"family": "=Bundle.entry.resource.ofType(Patient).name.family"},
        "codes": ["=Bundle.entry.resource.ofType(Observation).code.coding.code"],
        "missing": "=Bundle.entry.resource.ofType(Encounter).id",
        "formula": "==not an expression",
        "fixed": ["hub", 1, True, None],
    }
    webhook(peer.url(), body="template", template=template).send(PAYLOAD, timeout=5)
    [request] = peer.requests
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "mrn": "123",
        "name": {"family": "Doe"},
        "codes": ["A", "B"],
        "missing": None,
        "formula": "=not an expression",
        "fixed": ["hub", 1, True, None],
    }


def test_a_template_keeps_the_written_digits_of_a_decimal(server):
    peer = server()
    body = b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation",'
    body += b' "valueQuantity": {"value": 1.50, "unit": "mg/dL"}}}]}'
    payload = Payload(body, "application/fhir+json", "key-2", "m2", None, 7)
    template = {"value": "=Bundle.entry.resource.valueQuantity.value", "count": 2}
    webhook(peer.url(), body="template", template=template).send(payload, timeout=5)
    assert peer.requests[0].body == b'{"value":1.50,"count":2}'


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ({"a": {"b": "=Bundle.entry.("}}, "template.a.b"),
        ({"a": ["=Bundle.nosuchfunction()"]}, "template.a[0]"),
    ],
)
def test_a_bad_expression_is_a_config_error_naming_its_place(template, where):
    with pytest.raises(ConfigError, match=re.escape(where) + ".*FHIRPath"):
        webhook("http://127.0.0.1/", body="template", template=template)


def test_template_body_needs_a_template():
    with pytest.raises(ConfigError, match="needs a template"):
        webhook("http://127.0.0.1/", body="template")


def test_a_body_that_cannot_fill_the_template_is_permanent(server):
    peer = server()
    bad = Payload(b"not json", "application/fhir+json", "k", "m")
    with pytest.raises(TransportError, match="template") as caught:
        webhook(peer.url(), body="template", template={"a": "=Bundle.id"}).send(bad, timeout=5)
    assert caught.value.permanent and peer.requests == []


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"type": "bearer", "token": "tok-SECRET-1"}, "Bearer tok-SECRET-1"),
        (
            {"type": "basic", "username": "hub", "password": "pw-SECRET-2"},
            "Basic " + base64.b64encode(b"hub:pw-SECRET-2").decode(),
        ),
    ],
)
def test_auth_is_sent_and_its_secret_never_shown(server, auth, expected):
    peer = server(500, b"upstream broke")
    t = webhook(peer.url(), auth=auth)
    secret = next(v for k, v in auth.items() if "SECRET" in str(v))
    assert secret not in repr(t.config) and secret not in str(t.config)
    with pytest.raises(TransportError) as caught:
        t.send(PAYLOAD, timeout=5)
    assert secret not in str(caught.value) and secret not in caught.value.response
    assert peer.requests[0].headers["Authorization"] == expected
    schema = json.dumps(type(t.config).model_json_schema())
    assert schema.count('"secret": true') == 2  # the bearer token and the basic password


def test_no_auth_sends_no_authorization(server):
    peer = server()
    webhook(peer.url()).send(PAYLOAD, timeout=5)
    assert "Authorization" not in peer.requests[0].headers


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (201, "ok"), (202, "ok"), (204, "ok")]
    + [(s, "transient") for s in (408, 425, 429, 500, 502, 503, 504)]
    + [(s, "permanent") for s in (301, 400, 401, 403, 404, 409, 410, 413, 422)],
)
def test_status_classification(server, status, outcome):
    peer = server(status, b"" if status == 204 else b"answer")
    t = webhook(peer.url())
    if outcome == "ok":
        assert t.send(PAYLOAD, timeout=5).status_code == status
        return
    with pytest.raises(TransportError) as caught:
        t.send(PAYLOAD, timeout=5)
    assert caught.value.permanent is (outcome == "permanent")
    assert caught.value.status_code == status and f"answered {status}" in str(caught.value)


def test_refused_connection_is_transient():
    with pytest.raises(TransportError, match="cannot reach") as caught:
        webhook(f"http://127.0.0.1:{free_port()}/").send(PAYLOAD, timeout=2)
    assert not caught.value.permanent


def test_no_answer_within_the_timeout_is_transient():
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(TransportError, match="within 0.3 s") as caught:
            webhook(url).send(PAYLOAD, timeout=0.3)
        assert not caught.value.permanent
    finally:
        listener.close()


def test_sends_reuse_one_connection_and_threads_share_the_pool(server):
    peer = server()
    t = webhook(peer.url())
    for _ in range(5):
        t.send(PAYLOAD, timeout=5)
    assert peer.connections == 1
    errors = []

    def work():
        for _ in range(10):
            try:
                t.send(PAYLOAD, timeout=10)
            except Exception as exc:  # collected: an assert in a thread would be lost
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(peer.requests) == 85
    assert peer.connections <= 9  # at most one per thread (plus the first), never one per send


def test_numbers_from_fhirpath_stay_numbers(server):
    peer = server()
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "valueQuantity": {"value": 1.5, "unit": "mg"},
                    "component": [{"valueInteger": 3}],
                }
            }
        ],
    }
    template = {
        "value": "=Bundle.entry.resource.ofType(Observation).value.value",
        "count": "=Bundle.entry.resource.ofType(Observation).component.value",
    }
    body = Payload(json.dumps(bundle).encode(), "application/fhir+json", "k", "m")
    webhook(peer.url(), body="template", template=template).send(body, timeout=5)
    assert peer.requests[0].json() == {"value": 1.5, "count": 3}


def test_messages_name_the_origin_not_a_secret_in_the_url(server):
    peer = server(503, b"busy")
    t = webhook(peer.url("/services/T0/B0/hook-SECRET-path?sig=SECRET-q"))
    with pytest.raises(TransportError) as caught:
        t.send(PAYLOAD, timeout=5)
    assert "SECRET" not in str(caught.value)
    assert str(caught.value).startswith(f"http://127.0.0.1:{peer.port} answered 503")
    with pytest.raises(TransportError) as caught:
        webhook(f"http://127.0.0.1:{free_port()}/hook-SECRET").send(PAYLOAD, timeout=2)
    assert "SECRET" not in str(caught.value)


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(server):
    peer = server(500, b"upstream broke")
    url = peer.url().replace("http://", "http://svc%40hub:pw%2FSECRET-3@")
    t = webhook(url)
    with pytest.raises(TransportError) as caught:
        t.send(PAYLOAD, timeout=5)
    assert "SECRET-3" not in str(caught.value)
    expected = "Basic " + base64.b64encode(b"svc@hub:pw/SECRET-3").decode()
    assert peer.requests[0].headers["Authorization"] == expected
    # An auth setting wins over the URL's credentials.
    with pytest.raises(TransportError):
        webhook(url, auth={"type": "bearer", "token": "tok-4"}).send(PAYLOAD, timeout=5)
    assert peer.requests[1].headers["Authorization"] == "Bearer tok-4"
