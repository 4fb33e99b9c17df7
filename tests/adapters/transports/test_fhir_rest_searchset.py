"""A query's answer (RSP^K22, ADR^A19: a searchset Bundle of Patients) delivered to a real
validating FHIR server (Medplum, tests/fhir_server) lands its patients there in every mode: each
as the conditional update the maps write for a Patient, so a repeated answer updates them."""

from __future__ import annotations

import pytest

from adapters.codecs import exact_json, hl7v2
from adapters.mapping.convert import convert
from adapters.registry import build_transport
from adapters.transports.base import Payload
from tests.fhir_server import MedplumServer

MODES = ["transaction", "batch", "per_resource"]
MSH = "MSH|^~\\&|MPI|GOOD HEALTH^1.2.3.4^ISO|HUB|HUB|20240301101500+0100||{kind}|Q-{n}|P|2.5.1"
ADAM = "PID|1||12345^^^HOSP&1.2.3.4.5&ISO^MR||Everyman^Adam||19610615|M|||1 Main St^^Springfield"
EVE = "PID|2||67890^^^HOSP&1.2.3.4.5&ISO^MR||Everyman^Eve||19640203|F"


def answer(*segments: str, kind: str = "RSP^K22^RSP_K21", n: int = 1) -> Payload:
    raw = "\r".join([MSH.format(kind=kind, n=n), "MSA|AA|Q-1", *segments]) + "\r"
    bundle = convert(hl7v2.parse(raw.encode())).bundle
    assert bundle["type"] == "searchset"
    body = exact_json.dumps(bundle).encode()
    return Payload(body, "application/fhir+json", f"key-{n}", "m1", None, n)


def send(server: MedplumServer, mode: str, payload: Payload):
    transport = build_transport("fhir_rest", {"base_url": server.url, "mode": mode})
    return transport.send(payload, timeout=60)


def given_names(server: MedplumServer) -> list[str]:
    return sorted(p["name"][0]["given"][0] for p in server.search("Patient"))


@pytest.mark.parametrize("mode", MODES)
def test_the_patients_a_query_found_land_on_the_server_once(server, mode):
    query = "QAK|Q-1|OK|Q22^Find Candidates^HL7nnnn|2"
    result = send(server, mode, answer(query, ADAM, EVE))
    assert 200 <= result.status_code < 300
    assert given_names(server) == ["Adam", "Eve"]
    [adam] = server.search("Patient", "identifier=urn:oid:1.2.3.4.5|12345")
    assert adam["address"][0]["city"] == "Springfield"
    # the same answer again (a retry, or the same query asked twice): updated, not duplicated
    send(server, mode, answer(query, ADAM, EVE, n=2))
    assert given_names(server) == ["Adam", "Eve"]


def test_an_adr_a19_answer_lands_too(server):
    send(server, "transaction", answer("EVN|A19", EVE, kind="ADR^A19^ADR_A19"))
    assert given_names(server) == ["Eve"]


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_that_found_nobody_sends_nothing_and_succeeds(server, mode):
    result = send(server, mode, answer("QAK|Q-1|NF"))
    assert result.status_code == 200
    assert "no patients" in result.summary and result.request == ""
    assert server.search("Patient") == []


def test_the_bench_shows_the_transaction_the_server_gets():
    transport = build_transport("fhir_rest", {"base_url": "http://fhir.example/fhir"})
    encoded = transport.encode(answer(ADAM, EVE))
    bundle = exact_json.loads(encoded.body)
    assert bundle["type"] == "transaction"
    requests = [e["request"] for e in bundle["entry"]]
    assert {"method": "PUT", "url": "Patient?identifier=urn:oid:1.2.3.4.5|12345"} in requests
    assert all("search" not in e for e in bundle["entry"])
