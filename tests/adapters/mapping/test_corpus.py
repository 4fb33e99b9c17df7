"""Every message of the shared corpus: a supported one converts to a valid Bundle carrying its key
fields; an unsupported or malformed one raises a clear MappingError / HL7Error; nothing else.

The corpus is HL7_CORPUS, else ../shared/corpus beside the repository. Each Bundle is also checked
by fhir.resources' own models (`validate_full`), the reference the fast validator follows.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from adapters.codecs import hl7v2
from adapters.codecs.hl7v2_batch import is_batch, split_batch
from adapters.mapping import MappingError, UnsupportedMessageType, convert
from adapters.mapping.registry import lookup
from adapters.mapping.validation import validate_full
from tests.support import CORPUS

FILES = sorted(CORPUS.rglob("*.hl7")) if CORPUS.is_dir() else []

# Without the corpus every test here stops at the fixture: skipped on a laptop, failed in CI.
pytestmark = pytest.mark.usefixtures("corpus")


def _messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return split_batch(data) if is_batch(data) else [data]


def _count(message: hl7v2.Message, name: str) -> int:
    return len(message.all(name))


def _types(bundle: dict) -> Counter:
    return Counter(e["resource"]["resourceType"] for e in bundle["entry"])


def _check_patient(message, result) -> None:
    patients = result.resources("Patient")
    assert patients, "no Patient"
    family = message.first("PID").get(5, 1, 1).strip()
    if family and family != '""':
        assert patients[0]["name"][0]["family"] == family


def _check_oru(message, result) -> None:
    _check_patient(message, result)
    types = _types(result.bundle)
    coded = [obx for obx in message.all("OBX") if obx.get(3, 1).strip() or obx.get(3, 2).strip()]
    pointers = [obx for obx in coded if obx.get(2, 1).strip().upper() == "RP"]
    # one report per order, and one per RP result (a report presented by its URL)
    assert types["DiagnosticReport"] == _count(message, "OBR") + len(pointers)
    assert types["Observation"] == len(coded) - len(pointers)


def _per_segment(resource_type: str, segment: str):
    def check(message, result) -> None:
        _check_patient(message, result)
        assert _types(result.bundle)[resource_type] == _count(message, segment)

    return check


def _check_orders(message, result) -> None:
    _check_patient(message, result)
    parents = {
        based_on["reference"]
        for entry in result.bundle["entry"]
        for based_on in entry["resource"].get("basedOn", [])
    }
    requests = [  # the orders themselves, not the parent orders they name (ORC-8, OBR-29)
        e["resource"]
        for e in result.bundle["entry"]
        if e["resource"]["resourceType"] == "ServiceRequest" and e["fullUrl"] not in parents
    ]
    assert len(requests) == max(_count(message, "ORC"), _count(message, "OBR"))
    for request in requests:
        assert request["intent"] == "order" and request["status"]


def _check_appointment(message, result) -> None:
    [appointment] = result.resources("Appointment")
    assert appointment["participant"]
    if message.first("PID") is not None:
        _check_patient(message, result)


def _check_document(message, result) -> None:
    _check_patient(message, result)
    [document] = result.resources("DocumentReference")
    assert document["content"]


def _check_pharmacy_order(message, result) -> None:
    """One encoded MedicationRequest per RXE (and an original-order one per RXO beside it)."""
    _check_patient(message, result)
    requests = result.resources("MedicationRequest")
    encoded = [r for r in requests if r["intent"] != "original-order"]
    assert len(encoded) == _count(message, "RXE")
    assert len(requests) - len(encoded) <= _count(message, "RXO")


CHECKS = {
    "ADT": _check_patient,
    "ORU": _check_oru,
    "ORM": _check_orders,
    "OML": _check_orders,
    "SIU": _check_appointment,
    "VXU": _per_segment("Immunization", "RXA"),
    "MDM": _check_document,
    "DFT": _per_segment("ChargeItem", "FT1"),
    "RDE": _check_pharmacy_order,
}


def _check_expected(path: Path, index: int, result) -> None:
    """Compare with the other converter's output where both carry the value (not normative)."""
    expected_file = path.with_suffix(".expected.json")
    if index or not expected_file.exists():
        return
    expected = json.loads(expected_file.read_text())
    theirs = [
        e["resource"]
        for e in expected.get("entry", [])
        if e["resource"]["resourceType"] == "Patient"
    ]
    ours = result.resources("Patient")
    if theirs and ours:
        for key in ("birthDate", "gender"):
            if key in theirs[0] and key in ours[0]:
                assert ours[0][key] == theirs[0][key], key


@pytest.mark.parametrize(
    "path",
    FILES or [pytest.param(None, id="no-corpus")],
    ids=[str(p.relative_to(CORPUS)) for p in FILES] or None,
)
def test_corpus_message(path: Path):
    try:
        raw_messages = _messages(path)
    except hl7v2.HL7Error as exc:
        assert str(exc), "an HL7Error must say why"
        return
    for index, raw in enumerate(raw_messages):
        try:
            message = hl7v2.parse(raw)
        except hl7v2.HL7Error as exc:
            assert exc.reason
            continue
        supported = lookup(message.message_code, message.trigger_event) is not None
        try:
            result = convert(message)
        except UnsupportedMessageType as exc:
            assert not supported
            assert message.message_type in str(exc)
            continue
        except MappingError as exc:
            assert "internal map error" not in str(exc), str(exc)
            assert exc.target and (exc.segment or exc.field), str(exc)
            assert path.parent.name == "malformed", f"{path.name}: {exc}"
            continue
        validate_full(result.bundle)
        assert result.bundle["type"] == "transaction"
        assert result.resource_types == list(_types(result.bundle))
        check = CHECKS.get(message.message_code.upper())
        if check:
            check(message, result)
        _check_expected(path, index, result)


def test_corpus_has_the_expected_outcomes():
    """A summary guard: the supported folders convert; in `other/` only the PPR^PC1 (problems)
    has a map, the rest (ERP, ORF, MFN) is refused as unsupported."""
    outcome: dict[str, Counter] = {}
    for path in FILES:
        folder = path.parent.name
        tally = outcome.setdefault(folder, Counter())
        try:
            raws = _messages(path)
        except hl7v2.HL7Error:
            tally["rejected"] += 1
            continue
        for raw in raws:
            try:
                convert(hl7v2.parse(raw))
                tally["converted"] += 1
            except UnsupportedMessageType:
                tally["unsupported"] += 1
            except (MappingError, hl7v2.HL7Error):
                tally["rejected"] += 1
    assert outcome["other"]["converted"] == 1
    assert outcome["other"]["unsupported"] == 3
    for folder in ("adt", "oru"):
        assert outcome[folder]["converted"] == sum(outcome[folder].values()), (
            folder,
            outcome[folder],
        )
