"""FHIR REST: per-resource mode, OAuth2 client credentials and OperationOutcome issues,
against a real local HTTP server that plays the FHIR server and the token endpoint."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from urllib.parse import parse_qs, unquote

import pytest

from adapters.registry import ConfigError, build_transport
from adapters.transports import fhir_rest
from adapters.transports.base import Payload, TransportError
from adapters.transports.fhir_rest import ServerLimit
from tests.adapters.transports.http_peer import HttpPeer, Reply, outcome

PATIENT = "urn:uuid:00000000-0000-0000-0000-00000000000a"
DOCTOR = "urn:uuid:00000000-0000-0000-0000-00000000000b"
OBS = "urn:uuid:00000000-0000-0000-0000-00000000000c"
SECRET = "client-SECRET-xyz"

BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {  # first in the Bundle, but it refers to the two below: it must go last
            "fullUrl": OBS,
            "resource": {
                "resourceType": "Observation",
                "identifier": [{"system": "urn:obs", "value": "o1"}],
                "subject": {"reference": PATIENT},
                "performer": [{"reference": DOCTOR}],
            },
            "request": {"method": "PUT", "url": "Observation?identifier=urn:obs|o1"},
        },
        {
            "fullUrl": PATIENT,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:mrn", "value": "123"}],
            },
            "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|123"},
        },
        {
            "fullUrl": DOCTOR,
            "resource": {
                "resourceType": "Practitioner",
                "identifier": [{"system": "urn:npi", "value": "9"}],
            },
            "request": {
                "method": "POST",
                "url": "Practitioner",
                "ifNoneExist": "identifier=urn:npi|9",
            },
        },
    ],
}


def payload(bundle: dict = BUNDLE, key: str = "key-1") -> Payload:
    return Payload(json.dumps(bundle).encode(), "application/fhir+json", key, "m1", None, 1)


class FhirServer:
    """Stores resources, answers with Location; ``fail`` maps a resource type to a reply."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.fail: dict[str, Reply] = {}
        self.entry_status: dict[str, str] = {}  # a batch entry's status by resource type
        self.locations = True  # batch entries answered with a location
        self.accepted_tokens = {"tok-1", "tok-2", "tok-3"}
        self.tokens_issued: list[dict] = []
        self.token_reply: Reply | None = None
        self.expires_in = 3600
        self.peer = HttpPeer({"/fhir/": self.fhir, "/token": self.token})

    def fhir(self, request) -> Reply:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer tok-") and auth[7:] not in self.accepted_tokens:
            return Reply(401, outcome("error", "login", "token expired"))
        rtype = request.path.removeprefix("/fhir/").split("?")[0].split("/")[0]
        if rtype in self.fail:
            return self.fail[rtype]
        if rtype == "" and request.json()["type"] == "batch":
            return Reply(200, self.batch_response(request.json()["entry"]))
        if rtype == "":  # a transaction
            entries = request.json()["entry"]
            return Reply(
                200,
                {
                    "resourceType": "Bundle",
                    "type": "transaction-response",
                    "entry": [
                        {
                            "response": {
                                "status": "201 Created",
                                "outcome": outcome(
                                    "warning", "informational", "display ignored", ["Patient.name"]
                                ),
                            }
                        }
                        for _ in entries
                    ],
                },
            )
        new_id = next(self.ids)
        return Reply(
            201,
            outcome("information", "informational", f"stored {rtype}/{new_id}"),
            {"Location": self.peer.url(f"/fhir/{rtype}/{new_id}/_history/1")},
        )

    def batch_response(self, entries: list[dict]) -> dict:
        """Each entry answered as ``entry_status`` says for its type (201 and a location else)."""
        answers = []
        for entry in entries:
            rtype = entry["request"]["url"].split("?")[0].split("/")[0]
            status = self.entry_status.get(rtype, "201 Created")
            response: dict = {"status": status}
            if status.startswith("2") and self.locations:
                response["location"] = f"{rtype}/{next(self.ids)}/_history/1"
            elif not status.startswith("2"):
                response["outcome"] = outcome("error", "processing", f"{rtype} said {status}")
            answers.append({"response": response})
        return {"resourceType": "Bundle", "type": "batch-response", "entry": answers}

    def token(self, request) -> Reply:
        self.tokens_issued.append({"headers": request.headers, "form": parse_qs(request.body)})
        if self.token_reply:
            return self.token_reply
        return Reply(
            200,
            {
                "access_token": f"tok-{len(self.tokens_issued)}",
                "token_type": "Bearer",
                "expires_in": self.expires_in,
            },
        )


@pytest.fixture
def fhir():
    server = FhirServer()
    server.peer.start()
    yield server
    server.peer.stop()


def transport(fhir: FhirServer, **config):
    return build_transport("fhir_rest", {"base_url": fhir.peer.url("/fhir"), **config})


def oauth(fhir: FhirServer, **extra) -> dict:
    return {
        "token_url": fhir.peer.url("/token"),
        "client_id": "hub",
        "client_secret": SECRET,
        "scope": "system/*.write",
        **extra,
    }


# ----------------------------------------------------------------------- OperationOutcome


def test_a_transaction_returns_the_issues_of_each_entry(fhir):
    result = transport(fhir).send(payload(), timeout=5)
    assert result.summary == "Bundle transaction-response: 201 Created, 201 Created, 201 Created"
    assert result.issues[0] == {
        "severity": "warning",
        "code": "informational",
        "diagnostics": "display ignored",
        "expression": ["Patient.name"],
    }
    assert len(result.issues) == 3


def test_an_error_outcome_becomes_the_errors_issues(fhir):
    fhir.fail[""] = Reply(
        422, outcome("error", "required", "Patient.name is required", ["Bundle.entry[1]"])
    )
    with pytest.raises(TransportError) as caught:
        transport(fhir).send(payload(), timeout=5)
    error = caught.value
    assert error.permanent and error.status_code == 422
    assert error.issues == (
        {
            "severity": "error",
            "code": "required",
            "diagnostics": "Patient.name is required",
            "expression": ["Bundle.entry[1]"],
        },
    )
    assert "Patient.name is required" in str(error)


def test_an_answer_that_is_not_json_has_no_issues(fhir):
    fhir.fail[""] = Reply(502, b"<html>bad gateway</html>")
    with pytest.raises(TransportError) as caught:
        transport(fhir).send(payload(), timeout=5)
    assert not caught.value.permanent and caught.value.issues == ()
    assert "bad gateway" in caught.value.response


# ---------------------------------------------------------------------------- batch


def test_batch_sends_one_batch_per_dependency_level_with_server_ids(fhir):
    result = transport(fhir, mode="batch").send(payload(), timeout=5)
    first, second = (r.json() for r in fhir.peer.requests)
    assert first["type"] == second["type"] == "batch"
    assert [e["request"] for e in first["entry"]] == [
        BUNDLE["entry"][1]["request"],  # the Patient and the Practitioner refer to nothing
        BUNDLE["entry"][2]["request"],  # (as written: conditional update, conditional create)
    ]
    assert all("fullUrl" not in e for e in first["entry"])
    [observation] = second["entry"]
    assert observation["resource"]["subject"] == {"reference": "Patient/1"}
    assert observation["resource"]["performer"] == [{"reference": "Practitioner/2"}]
    assert [r.headers["Idempotency-Key"] for r in fhir.peer.requests] == ["key-1-b1", "key-1-b2"]
    assert result.summary == "batch: 201, 201, 201"
    assert result.request.startswith("2 batch Bundles to ")


def test_batch_refers_by_conditional_reference_when_the_server_names_no_id(fhir):
    fhir.locations = False
    transport(fhir, mode="batch").send(payload(), timeout=5)
    [observation] = fhir.peer.requests[1].json()["entry"]
    assert observation["resource"]["subject"] == {"reference": "Patient?identifier=urn:mrn|123"}
    assert observation["resource"]["performer"] == [
        {"reference": "Practitioner?identifier=urn:npi|9"}
    ]


@pytest.mark.parametrize(
    ("statuses", "permanent"),
    [({"Practitioner": "503"}, False), ({"Practitioner": "503", "Patient": "422"}, True)],
)
def test_a_partly_failed_batch_is_permanent_only_when_an_entry_can_never_succeed(
    fhir, statuses, permanent
):
    fhir.entry_status = statuses
    with pytest.raises(TransportError) as caught:
        transport(fhir, mode="batch").send(payload(), timeout=5)
    error = caught.value
    assert error.permanent is permanent and not isinstance(error, ServerLimit)
    assert str(error).startswith(f"batch 1 (2 entries): {fhir.peer.url('/fhir/')} refused")
    assert "POST Practitioner 503: Practitioner said 503" in str(error)
    # the conditional URL (an MRN) stays out of the log (the peer's port may hold "123")
    assert "123" not in str(error).replace(fhir.peer.url("/fhir/"), "")
    assert len(fhir.peer.requests) == 1  # the Observation, which needs both, was not sent


def test_a_batch_answer_that_is_not_a_batch_response_is_transient(fhir):
    fhir.fail[""] = Reply(200, outcome("information", "informational", "ok?"))
    with pytest.raises(TransportError) as caught:
        transport(fhir, mode="batch").send(payload(), timeout=5)
    assert not caught.value.permanent
    assert "without a batch-response Bundle of 2 entries" in str(caught.value)


# ---------------------------------------------------------------------------- server limits


@pytest.mark.parametrize(
    ("mode", "fix"),
    [
        ("transaction", "use mode batch (one batch per dependency level) or per_resource"),
        ("batch", "use mode per_resource"),
    ],
)
def test_a_size_refusal_names_the_limit_and_the_mode_that_fits(fhir, mode, fix):
    fhir.fail[""] = Reply(413, b"Request Entity Too Large")
    with pytest.raises(ServerLimit) as caught:
        transport(fhir, mode=mode, if_too_large="fail").send(payload(), timeout=5)
    error = caught.value
    assert error.permanent and error.status_code == 413
    assert str(error).endswith(fix)
    if mode == "transaction":
        assert "a transaction of 3 entries (3 conditional, 2 updates) (413)" in str(error)
    assert len(fhir.peer.to("/fhir/")) == 1  # no second try


def test_batches_refused_too_after_the_transaction_say_both_and_the_mode_that_fits(fhir):
    fhir.fail[""] = Reply(413, b"Request Entity Too Large")  # transactions and batches alike
    with pytest.raises(ServerLimit) as caught:
        transport(fhir).send(payload(), timeout=5)
    error = caught.value
    said = str(error)
    assert said.startswith(
        "server refused a transaction of 3 entries (3 conditional, 2 updates) for its size limit "
        "(Request Entity Too Large); sent as a batch instead: entries are not applied atomically; "
        "then server limit: batch 1 (2 entries): "
    )
    assert said.endswith("use mode per_resource") and error.permanent
    assert error.issues[0]["severity"] == "warning"
    assert [r.json()["type"] for r in fhir.peer.to("/fhir/")] == ["transaction", "batch"]


def test_a_refusal_is_forgotten_after_the_hour(fhir, monkeypatch):
    fhir.fail[""] = Reply(413, b"Request Entity Too Large")
    sender = transport(fhir)
    for _ in range(2):
        with pytest.raises(ServerLimit):
            sender.send(payload(), timeout=5)
    sent = [r.json()["type"] for r in fhir.peer.to("/fhir/")]
    assert sent == ["transaction", "batch", "batch"]  # remembered: no second transaction
    monkeypatch.setattr(fhir_rest, "REMEMBER_REFUSAL_S", 0.0)
    with pytest.raises(ServerLimit):
        sender.send(payload(), timeout=5)
    assert [r.json()["type"] for r in fhir.peer.to("/fhir/")][3:] == ["transaction", "batch"]


def test_a_rate_limit_is_no_size_limit(fhir):
    fhir.fail[""] = Reply(429, outcome("error", "throttled", "rate limit exceeded"))
    with pytest.raises(TransportError) as caught:
        transport(fhir).send(payload(), timeout=5)
    assert not isinstance(caught.value, ServerLimit) and not caught.value.permanent


def test_the_mode_is_offered_with_what_each_one_does():
    schema = type(build_transport("fhir_rest", {"base_url": "https://ehr/fhir"}).config)
    mode = schema.model_json_schema()["properties"]["mode"]
    assert mode["enum"] == ["transaction", "batch", "per_resource"]
    assert mode["default"] == "transaction"
    for word in (
        "transaction:",
        "batch:",
        "per_resource:",
        "Medplum",
        "rather than duplicating it",
    ):
        assert word in mode["description"]


def test_what_a_transaction_too_large_for_the_server_becomes_is_a_choice():
    schema = type(build_transport("fhir_rest", {"base_url": "https://ehr/fhir"}).config)
    choice = schema.model_json_schema()["properties"]["if_too_large"]
    assert choice["enum"] == ["batch", "fail"] and choice["default"] == "batch"
    assert "not applied all or nothing" in choice["description"]
    with pytest.raises(ConfigError):
        build_transport("fhir_rest", {"base_url": "https://ehr/fhir", "if_too_large": "split"})


# ---------------------------------------------------------------------------- per resource


def test_per_resource_sends_referenced_resources_first_and_rewrites_references(fhir):
    result = transport(fhir, mode="per_resource").send(payload(), timeout=5)
    sent = [(r.method, unquote(r.path)) for r in fhir.peer.requests]
    assert sent == [
        ("PUT", "/fhir/Patient?identifier=urn:mrn|123"),
        ("POST", "/fhir/Practitioner"),
        ("PUT", "/fhir/Observation?identifier=urn:obs|o1"),
    ]
    patient, doctor, obs = fhir.peer.requests
    assert doctor.headers["If-None-Exist"] == "identifier=urn:npi|9"
    assert "If-None-Exist" not in patient.headers
    assert obs.json()["subject"] == {"reference": "Patient/1"}
    assert obs.json()["performer"] == [{"reference": "Practitioner/2"}]
    # one key per entry, stable across retries
    assert [r.headers["Idempotency-Key"] for r in fhir.peer.requests] == [
        "key-1-1",
        "key-1-2",
        "key-1-0",
    ]
    assert result.summary == "per_resource: 201, 201, 201"
    assert [i["diagnostics"] for i in result.issues] == [
        "stored Patient/1",
        "stored Practitioner/2",
        "stored Observation/3",
    ]


CONDITION = "urn:uuid:00000000-0000-0000-0000-00000000000d"
ENCOUNTER = "urn:uuid:00000000-0000-0000-0000-00000000000e"
CYCLE = {  # Condition.encounter and Encounter.diagnosis refer to each other, as ADT maps write
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": CONDITION,
            "resource": {
                "resourceType": "Condition",
                "identifier": [{"system": "urn:dg1", "value": "d1"}],
                "subject": {"reference": "Patient/p"},
                "encounter": {"reference": ENCOUNTER},
            },
            "request": {"method": "PUT", "url": "Condition?identifier=urn:dg1|d1"},
        },
        {
            "fullUrl": ENCOUNTER,
            "resource": {
                "resourceType": "Encounter",
                "identifier": [{"system": "urn:visit", "value": "v1"}],
                "diagnosis": [{"condition": {"reference": CONDITION}, "rank": 1}],
            },
            "request": {"method": "PUT", "url": "Encounter?identifier=urn:visit|v1"},
        },
    ],
}


def test_per_resource_completes_a_reference_cycle_once_both_are_stored(fhir):
    result = transport(fhir, mode="per_resource").send(payload(CYCLE), timeout=5)
    sent = [(r.method, unquote(r.path), r.json()) for r in fhir.peer.requests]
    assert [(method, path) for method, path, _ in sent] == [
        # the Condition comes first in the Bundle, so the Encounter it needs goes before it
        ("PUT", "/fhir/Encounter?identifier=urn:visit|v1"),
        ("PUT", "/fhir/Condition?identifier=urn:dg1|d1"),
        ("PUT", "/fhir/Encounter/1"),  # the update that adds what had to wait
    ]
    first, condition, completion = (body for _, _, body in sent)
    assert "diagnosis" not in first  # the list item that held the reference waits, whole
    assert first["identifier"] == [{"system": "urn:visit", "value": "v1"}]
    assert condition["encounter"] == {"reference": "Encounter/1"}
    assert completion["id"] == "1"
    assert completion["diagnosis"] == [{"condition": {"reference": "Condition/2"}, "rank": 1}]
    assert result.summary == "per_resource: 201, 201, 201"


def test_batch_completes_a_reference_cycle_in_a_last_batch(fhir):
    result = transport(fhir, mode="batch").send(payload(CYCLE), timeout=5)
    batches = [r.json()["entry"] for r in fhir.peer.requests]
    assert [[e["request"]["url"] for e in batch] for batch in batches] == [
        ["Encounter?identifier=urn:visit|v1"],
        ["Condition?identifier=urn:dg1|d1"],
        ["Encounter/1"],
    ]
    assert "diagnosis" not in batches[0][0]["resource"]
    assert batches[2][0]["resource"]["diagnosis"][0]["condition"] == {"reference": "Condition/2"}
    assert result.request.startswith("3 batch Bundles to ")


def test_per_resource_without_requests_uses_the_identifier_then_the_id(fhir):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "s", "value": "v"}],
                }
            },
            {"resource": {"resourceType": "Device", "id": "dev-1"}},
            {"resource": {"resourceType": "Basic"}},
        ],
    }
    transport(fhir, mode="per_resource").send(payload(bundle), timeout=5)
    assert [(r.method, unquote(r.path)) for r in fhir.peer.requests] == [
        ("PUT", "/fhir/Patient?identifier=s|v"),
        ("PUT", "/fhir/Device/dev-1"),
        ("POST", "/fhir/Basic"),
    ]


@pytest.mark.parametrize(("status", "permanent"), [(503, False), (429, False), (422, True)])
def test_per_resource_stops_at_the_first_failure(fhir, status, permanent):
    fhir.fail["Practitioner"] = Reply(status, outcome("error", "processing", f"no ({status})"))
    with pytest.raises(TransportError) as caught:
        transport(fhir, mode="per_resource").send(payload(), timeout=5)
    error = caught.value
    assert error.permanent is permanent and error.status_code == status
    assert str(error).startswith("entry 2/3 (POST Practitioner)")
    assert [i["diagnostics"] for i in error.issues] == ["stored Patient/1", f"no ({status})"]
    assert [r.path.split("?")[0] for r in fhir.peer.requests] == [
        "/fhir/Patient",
        "/fhir/Practitioner",
    ]  # the Observation was not sent


def test_per_resource_error_messages_do_not_carry_identifiers(fhir):
    fhir.fail["Patient"] = Reply(500, b"")
    with pytest.raises(TransportError) as caught:
        transport(fhir, mode="per_resource").send(payload(), timeout=5)
    said = str(caught.value).replace(fhir.peer.url("/fhir/"), "")  # its port may hold "123"
    assert "123" not in said and "PUT Patient" in said


def test_per_resource_needs_a_bundle(fhir):
    bad = Payload(b'{"resourceType": "Patient"}', "application/fhir+json", "k", "m")
    with pytest.raises(TransportError, match="not a Bundle") as caught:
        transport(fhir, mode="per_resource").send(bad, timeout=5)
    assert caught.value.permanent


# ---------------------------------------------------------------------------------- OAuth2


def test_oauth2_token_is_fetched_once_and_shared_by_threads(fhir):
    t = transport(fhir, oauth2=oauth(fhir))
    errors = []

    def work():
        for _ in range(5):
            try:
                t.send(payload(), timeout=10)
            except Exception as exc:  # collected: an assert in a thread would be lost
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(fhir.tokens_issued) == 1
    assert {r.headers["Authorization"] for r in fhir.peer.to("/fhir/")} == {"Bearer tok-1"}
    [issued] = fhir.tokens_issued
    assert issued["form"] == {b"grant_type": [b"client_credentials"], b"scope": [b"system/*.write"]}
    basic = base64.b64encode(f"hub:{SECRET}".encode()).decode()
    assert issued["headers"]["Authorization"] == f"Basic {basic}"


def test_oauth2_client_secret_in_the_form_when_asked(fhir):
    transport(fhir, oauth2=oauth(fhir, client_auth="post")).send(payload(), timeout=5)
    [issued] = fhir.tokens_issued
    assert issued["form"][b"client_secret"] == [SECRET.encode()]
    assert "Authorization" not in issued["headers"]


def test_oauth2_token_is_refreshed_shortly_before_it_expires(fhir):
    fhir.expires_in = 3  # refreshed 0.3 s early: at 2.7 s, far after the first two sends
    t = transport(fhir, oauth2=oauth(fhir))
    t.send(payload(), timeout=5)
    t.send(payload(), timeout=5)
    assert len(fhir.tokens_issued) == 1
    time.sleep(2.8)  # past the refresh point, whatever the machine's load
    t.send(payload(), timeout=5)
    assert len(fhir.tokens_issued) == 2


def test_a_401_fetches_a_new_token_once_and_retries(fhir):
    t = transport(fhir, oauth2=oauth(fhir))
    t.send(payload(), timeout=5)
    fhir.accepted_tokens = {"tok-2"}  # the server revoked tok-1
    assert t.send(payload(), timeout=5).status_code == 200
    assert len(fhir.tokens_issued) == 2
    assert [r.headers["Authorization"] for r in fhir.peer.to("/fhir/")] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_a_401_with_a_fresh_token_is_permanent(fhir):
    fhir.accepted_tokens = set()
    with pytest.raises(TransportError) as caught:
        transport(fhir, oauth2=oauth(fhir)).send(payload(), timeout=5)
    assert caught.value.permanent and caught.value.status_code == 401
    assert len(fhir.tokens_issued) == 2 and len(fhir.peer.to("/fhir/")) == 2


@pytest.mark.parametrize(
    ("reply", "permanent", "said"),
    [
        (
            Reply(401, {"error": "invalid_client", "error_description": "bad secret"}),
            True,
            "invalid_client bad secret",
        ),
        (Reply(400, {"error": "invalid_scope"}), True, "invalid_scope"),
        (Reply(503, b"down for maintenance"), False, "down for maintenance"),
        (Reply(200, {"token_type": "Bearer"}), True, "no OAuth2 token"),
        (Reply(500, f"echo {SECRET}".encode()), False, "echo ***"),
    ],
)
def test_token_endpoint_failures(fhir, reply, permanent, said):
    fhir.token_reply = reply
    t = transport(fhir, oauth2=oauth(fhir))
    with pytest.raises(TransportError) as caught:
        t.send(payload(), timeout=5)
    assert caught.value.permanent is permanent and said in str(caught.value)
    assert SECRET not in str(caught.value) and fhir.peer.to("/fhir/") == []


def test_unreachable_token_endpoint_is_transient(fhir):
    cfg = oauth(fhir, token_url="http://127.0.0.1:9/token")
    with pytest.raises(TransportError, match="no OAuth2 token") as caught:
        transport(fhir, oauth2=cfg).send(payload(), timeout=2)
    assert not caught.value.permanent


def test_secrets_are_marked_and_never_shown(fhir):
    t = transport(fhir, oauth2=oauth(fhir))
    assert SECRET not in repr(t.config) and SECRET not in str(t.config)
    schema = type(t.config).model_json_schema()
    assert schema["$defs"]["OAuth2"]["properties"]["client_secret"]["secret"] is True
    assert schema["properties"]["bearer_token"]["secret"] is True


def test_bearer_token_and_oauth2_together_is_a_config_error(fhir):
    with pytest.raises(ConfigError, match="not both"):
        transport(fhir, bearer_token="x", oauth2=oauth(fhir))


@pytest.mark.parametrize("mode", ["batch", "per_resource", "transaction"])
def test_every_mode_sends_decimals_as_they_were_written(fhir, mode):
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "potassium"},
        "valueQuantity": {"value": "__1.50__", "unit": "mmol/L"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": observation, "request": {"method": "POST", "url": "Observation"}}],
    }
    body = json.dumps(bundle).replace('"__1.50__"', "1.50").encode()
    sent = Payload(body, "application/fhir+json", "key-dec", "m1", None, 1)
    transport(fhir, mode=mode).send(sent, timeout=5)
    [request] = fhir.peer.requests
    assert b'"value":1.50' in request.body.replace(b" ", b"")
