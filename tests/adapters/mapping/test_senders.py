"""Messages from senders outside the shared corpus (senders/README.md): each converts as the hub
does (parse, map with validation, business keys) with no error-level issue, and its Bundle is
accepted whole by a real validating FHIR server (Medplum's, tests/fhir_server) in batch mode."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from adapters import keys
from adapters.codecs import exact_json, hl7v2
from adapters.mapping import convert
from adapters.registry import build_transport
from adapters.transports.base import Payload
from tests.fhir_server import MedplumServer

SENDERS = Path(__file__).parent / "senders"
FILES = sorted(SENDERS.glob("*.hl7"))


def converted(path: Path):
    message = hl7v2.parse(path.read_bytes())
    return message, convert(message, check=True)


@pytest.fixture(scope="module")
def medplum():
    server = MedplumServer().start()
    yield server
    server.stop()


def test_the_folder_holds_forty_messages_each_described():
    readme = (SENDERS / "README.md").read_text()
    assert len(FILES) >= 40
    assert [p.name for p in FILES if f"`{p.name}`" not in readme] == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_senders_message_converts_without_errors_and_keeps_its_keys(path):
    message, result = converted(path)
    assert [str(i) for i in result.issues if i.severity == "error"] == []
    found = {(key.kind, key.value) for key in keys.extract(message)}
    pid = message.first("PID")
    assert (keys.CONTROL_ID, message.control_id) in found  # how a user finds the message
    assert (keys.IDENTIFIER, pid.get(3, 1, 1)) in found
    assert (keys.FAMILY, pid.get(5, 1, 1)) in found


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_senders_bundle_is_accepted_whole_by_a_validating_server(medplum, path):
    medplum.reset()
    bundle = converted(path)[1].bundle
    transport = build_transport("fhir_rest", {"base_url": medplum.url, "mode": "batch"})
    body = exact_json.dumps(bundle).encode()
    # a batch entry the server refuses fails the send (TransportError naming the entry)
    transport.send(Payload(body, "application/fhir+json", path.stem, "m", None, 1), timeout=60)
    sent = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    assert {t: len(medplum.search(t)) for t in sent} == dict(sent)  # every entry stored
