"""FHIR REST in every mode against a real validating FHIR server (Medplum's router and repository
in a local Node process, tests/fhir_server), with Bundles converted from the shared corpus."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from adapters.codecs import exact_json, hl7v2
from adapters.mapping.convert import convert
from adapters.mapping.result import MappingError
from adapters.registry import build_transport
from adapters.transports.base import Payload, TransportError
from adapters.transports.fhir_rest import ServerLimit
from tests.fhir_server import MedplumServer
from tests.support import require_corpus

# > 8 entries, all conditional (Medplum: "requires strict isolation but has too many entries")
ORU = "oru/fhirconv_oru_r01_v251.hl7"  # 46 entries
ADT = "adt/fhirconv_adt_a01_v28_full.hl7"  # 51 entries
# > 50 conditional updates (Medplum: "more update operations than allowed")
CASELAB = "oru/cdc_oru_r01_v251_caselab_escaped_F.hl7"  # 83 entries, 82 PUT
SMALL = "adt/lfh_adt_a01_v27.hl7"  # 8 entries: within Medplum's limits


def bundle_of(name: str) -> dict:
    return convert(hl7v2.parse((require_corpus() / name).read_bytes())).bundle


def payload(bundle: dict, key: str = "msg-1") -> Payload:
    return Payload(exact_json.dumps(bundle).encode(), "application/fhir+json", key, "m1", None, 1)


def send(server: MedplumServer, mode: str, bundle: dict, key: str = "msg-1", **config):
    transport = build_transport("fhir_rest", {"base_url": server.url, "mode": mode, **config})
    return transport.send(payload(bundle, key), timeout=60)


def stored(server: MedplumServer, bundle: dict) -> dict[str, list[dict]]:
    """Every resource on the server of the types the Bundle holds."""
    types = {e["resource"]["resourceType"] for e in bundle["entry"]}
    return {t: server.search(t) for t in sorted(types)}


def references(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def the_patient(server: MedplumServer, bundle: dict) -> dict:
    patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    identifier = patient["resource"]["identifier"][0]
    found = server.search("Patient", f"identifier={identifier['system']}|{identifier['value']}")
    assert len(found) == 1
    return found[0]


# --- transaction: the server's limits, said as such ---------------------------------------------


@pytest.mark.parametrize(
    "name, said, size",
    [
        (ORU, "Transaction requires strict isolation but has too many entries", "46 entries"),
        (CASELAB, "Transaction contains more update operations than allowed", "83 entries"),
    ],
)
def test_a_transaction_over_the_servers_limit_is_refused_with_the_mode_that_fits(
    server, name, said, size
):
    bundle = bundle_of(name)
    with pytest.raises(ServerLimit) as refused:
        send(server, "transaction", bundle, if_too_large="fail")
    error = refused.value
    assert error.permanent and error.status_code == 400  # the same transaction fails again
    message = str(error)
    assert message.startswith(f"server limit: the server refused a transaction of {size}")
    assert said in message
    assert message.endswith("use mode batch (one batch per dependency level) or per_resource")
    assert error.issues[-1]["code"] == "too-costly"  # shown with the attempt's issues
    assert error.issues[-1]["diagnostics"] == message
    assert stored(server, bundle)["Patient"] == []  # nothing applied


def test_a_transaction_within_the_limits_is_applied_with_its_references(server):
    bundle = bundle_of(SMALL)
    result = send(server, "transaction", bundle)
    assert result.status_code == 200 and result.summary.startswith("Bundle transaction-response")
    patient = the_patient(server, bundle)
    encounters = server.search("Encounter")
    assert [e["subject"]["reference"] for e in encounters] == [f"Patient/{patient['id']}"]


def test_other_refusals_stay_ordinary_errors(server):
    bundle = bundle_of(SMALL)
    bundle["entry"][0]["resource"]["bogus"] = 1  # invalid FHIR: refused by validation
    with pytest.raises(TransportError) as refused:
        send(server, "transaction", bundle)
    assert not isinstance(refused.value, ServerLimit)
    assert refused.value.permanent and refused.value.status_code == 400
    assert "bogus" in str(refused.value)


# --- transaction falling back to batches: delivered, the trade-off said ----------------------------


def test_a_transaction_over_the_limit_is_sent_as_batches_and_says_so(server):
    bundle = bundle_of(ORU)
    entries = len(bundle["entry"])
    result = send(server, "transaction", bundle)  # if_too_large: batch, the default
    assert result.status_code == 200
    assert result.summary.startswith(
        f"server refused a transaction of {entries} entries ({entries} conditional, "
    )
    assert "for its size limit (Transaction requires strict isolation but has too many " in (
        result.summary
    )
    assert "; sent as a batch instead: entries are not applied atomically; batch: 20" in (
        result.summary
    )
    assert result.request.startswith(f"POST {server.url} (a transaction, refused for its size ")
    assert f"batch Bundles to {server.url} ({entries} entries)" in result.request
    assert result.issues[0]["severity"] == "warning"
    assert result.issues[0]["diagnostics"] == result.summary.split("; batch: ")[0]

    first = stored(server, bundle)
    patient = the_patient(server, bundle)
    observations = first["Observation"]
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{patient['id']}"}
    send(server, "transaction", bundle)  # the retry after a lost answer: stored once
    again = stored(server, bundle)
    assert {t: sorted(r["id"] for r in rs) for t, rs in again.items()} == {
        t: sorted(r["id"] for r in rs) for t, rs in first.items()
    }


def test_a_refused_size_goes_to_batches_at_once_while_smaller_ones_still_try_a_transaction(
    server,
):
    transport = build_transport("fhir_rest", {"base_url": server.url})
    large, small = bundle_of(ADT), bundle_of(SMALL)
    refused = transport.send(payload(bundle_of(ORU)), timeout=60)  # 46 entries: refused
    assert refused.request.startswith(f"POST {server.url} (a transaction, refused")

    remembered = transport.send(payload(large, "msg-2"), timeout=60)  # no smaller in any count
    entries = len(large["entry"])
    assert remembered.request.endswith(f" batch Bundles to {server.url} ({entries} entries)")
    assert "refused" not in remembered.request  # no transaction tried first
    assert f"under a minute ago; this one, of {entries} entries (" in remembered.summary
    assert ", is no smaller: sent as a batch instead without asking again: entries are not " in (
        remembered.summary
    )
    assert the_patient(server, large)  # delivered

    within = transport.send(payload(small, "msg-3"), timeout=60)  # 8 entries: a transaction
    assert within.summary.startswith("Bundle transaction-response: ")


# --- batch and per_resource: accepted, references resolved, retries harmless ---------------------


@pytest.mark.parametrize("mode", ["batch", "per_resource"])
@pytest.mark.parametrize("name", [ORU, ADT])  # CASELAB too: in the corpus-wide test
def test_large_bundles_are_applied_with_resolvable_references_and_retries_do_not_duplicate(
    server, mode, name
):
    bundle = bundle_of(name)
    result = send(server, mode, bundle)
    assert result.summary.startswith(f"{mode}: ")
    first = stored(server, bundle)
    on_server = {f"{r['resourceType']}/{r['id']}" for rs in first.values() for r in rs}
    for resources in first.values():
        for resource in resources:
            for ref in references(resource):  # every one names a resource the server holds
                assert ref in on_server, (resource["resourceType"], ref)
    patient = the_patient(server, bundle)
    observations = first.get("Observation", [])
    assert observations, "the corpus message has observations"
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{patient['id']}"}

    send(server, mode, bundle, key="msg-1")  # the retry of the same delivery
    again = stored(server, bundle)
    assert {t: sorted(r["id"] for r in rs) for t, rs in again.items()} == {
        t: sorted(r["id"] for r in rs) for t, rs in first.items()
    }


def test_batch_sends_one_bundle_per_dependency_level(server):
    bundle = bundle_of(ORU)
    result = send(server, "batch", bundle)
    levels = int(result.request.split()[0])
    assert 2 <= levels < len(bundle["entry"])  # Patient first, those that refer to it after
    assert result.request.endswith(f"({len(bundle['entry'])} entries)")
    assert result.summary.count(",") == len(bundle["entry"]) - 1


def test_a_partly_refused_batch_fails_permanently_and_its_retry_completes_without_duplicates(
    server,
):
    good = bundle_of(ORU)
    bad = copy.deepcopy(good)
    observation = next(e for e in bad["entry"] if e["resource"]["resourceType"] == "Observation")
    observation["resource"]["bogus"] = 1
    with pytest.raises(TransportError) as refused:
        send(server, "batch", bad)
    error = refused.value
    assert error.permanent and error.status_code == 400  # invalid: a retry as is cannot help
    assert " refused 1 of " in str(error) and "PUT Observation 400" in str(error)
    assert "bogus" in str(error) and "the retry sends the whole message again" in str(error)
    assert any("bogus" in i["diagnostics"] for i in error.issues)
    assert len(server.search("Patient")) == 1  # the first level was applied

    send(server, "batch", good)  # the message, corrected and replayed
    after = {t: len(rs) for t, rs in stored(server, good).items()}
    server.reset()
    send(server, "batch", good)  # the same message on an empty server: what one send stores
    assert {t: len(rs) for t, rs in stored(server, good).items()} == after


def test_per_resource_stops_at_a_refused_entry_and_names_it(server):
    bad = bundle_of(ORU)
    observation = next(e for e in bad["entry"] if e["resource"]["resourceType"] == "Observation")
    observation["resource"]["bogus"] = 1
    with pytest.raises(TransportError) as refused:
        send(server, "per_resource", bad)
    assert refused.value.permanent and not isinstance(refused.value, ServerLimit)
    assert "(PUT Observation): " in str(refused.value) and "bogus" in str(refused.value)


@pytest.mark.parametrize("mode", ["batch", "per_resource"])
def test_references_that_form_a_cycle_are_completed_once_both_are_stored(server, mode):
    bundle = bundle_of(ADT)  # Condition.encounter <-> Encounter.diagnosis.condition
    send(server, mode, bundle)
    [encounter] = server.search("Encounter")
    conditions = server.search("Condition")
    assert conditions
    for condition in conditions:
        assert condition["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    diagnoses = {d["condition"]["reference"] for d in encounter["diagnosis"]}
    assert diagnoses == {f"Condition/{c['id']}" for c in conditions}


@pytest.mark.parametrize("mode", ["batch", "per_resource"])
def test_patients_that_link_each_other_are_both_linked(server, mode):
    bundle = bundle_of("adt/fhirconv_adt_a40_v28.hl7")  # a merge: the two Patients link both ways
    send(server, mode, bundle)
    patients = {p["id"]: p for p in server.search("Patient")}
    linked = {
        (p_id, link["other"]["reference"]) for p_id, p in patients.items() for link in p["link"]
    }
    assert {other for _, other in linked} == {f"Patient/{p_id}" for p_id in patients}
    assert all(other != f"Patient/{p_id}" for p_id, other in linked)


def corpus_bundles() -> list[tuple[str, dict]]:
    """Every Bundle the shared corpus converts to (one per message the maps support)."""
    bundles = []
    for path in sorted(require_corpus().rglob("*.hl7")):
        try:
            bundles.append((path.name, convert(hl7v2.parse(path.read_bytes())).bundle))
        except (hl7v2.HL7Error, MappingError):
            continue  # malformed, batch files and unmapped types: covered by the mapping tests
    assert len(bundles) >= 40
    return bundles


def test_every_corpus_bundle_is_delivered_in_transaction_mode_and_stored_once(server):
    """As a transaction, or as batches when refused for the limit; sent again (a retry whose
    answer was lost) it stores nothing new: the server rewrites each fullUrl wherever it
    appears, so no identifier may repeat one. One transport: as a worker holds it."""
    transport = build_transport("fhir_rest", {"base_url": server.url})
    outcomes = Counter()
    for name, bundle in corpus_bundles():
        server.reset()
        try:
            result = transport.send(payload(bundle), timeout=60)
        except TransportError as error:
            raise AssertionError(f"{name}: refused: {error}") from error
        outcomes["batches" if "sent as a batch instead" in result.summary else "applied"] += 1
        first = {t: sorted(r["id"] for r in rs) for t, rs in stored(server, bundle).items()}
        transport.send(payload(bundle), timeout=60)
        again = {t: sorted(r["id"] for r in rs) for t, rs in stored(server, bundle).items()}
        assert again == first, name
    assert outcomes["applied"] and outcomes["batches"], outcomes  # the corpus has both sizes


def test_every_corpus_bundle_sent_as_batches_twice_is_stored_once(server):
    for name, bundle in corpus_bundles():
        server.reset()
        send(server, "batch", bundle)
        first = {t: sorted(r["id"] for r in rs) for t, rs in stored(server, bundle).items()}
        send(server, "batch", bundle)
        again = {t: sorted(r["id"] for r in rs) for t, rs in stored(server, bundle).items()}
        assert again == first, name
        for resources in stored(server, bundle).values():
            for resource in resources:
                assert not any(ref.startswith("urn:") for ref in references(resource)), name
