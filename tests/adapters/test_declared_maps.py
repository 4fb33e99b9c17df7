"""The Mapping page's tables (adapters.mapping.declared) against what conversion produces.

Every corpus message of a type with a built-in map is converted, and every hand-made sample in
tests/adapters/mapping/samples (fields and segments the maps read that no corpus message
carries); for each declared row whose v2 field the message carries, the row's FHIR path must hold
a value in a resource of the declared type. A map changed without its table (or a table changed
without its map) fails here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import fhirpathpy
import pytest
from fhirpathpy.models import models

from adapters.codecs import hl7v2
from adapters.mapping import convert, declared, registry
from adapters.mapping.field_rules import fhirpath_syntax_error
from adapters.mapping.result import MappingError

SKIPPED_FOLDERS = {"batch", "malformed"}
SAMPLES = Path(__file__).parent / "mapping" / "samples"


def corpus_messages(corpus):
    for path in [*sorted(corpus.rglob("*.hl7")), *sorted(SAMPLES.glob("*.hl7"))]:
        if path.parent.name in SKIPPED_FOLDERS:
            continue
        try:
            message = hl7v2.parse(path.read_bytes())
        except hl7v2.HL7Error:
            continue
        if declared.table(message.message_type) is not None:
            yield path, message


def present(message: hl7v2.Message, v2: str) -> bool:
    """Whether any occurrence of the row's segment carries a non-null value in its field."""
    segment, _, rest = v2.partition("-")
    number, _, component = rest.partition(".")
    for seg in message.all(segment):
        value = seg.get(int(number), int(component)) if component else seg[int(number)]
        if value and value.strip() and value.strip() != '""':
            return True
    return False


def has_value(bundle: dict, resource_type: str, path: str) -> bool:
    if resource_type == "Bundle":
        resources = [bundle]
    else:
        resources = [
            e["resource"]
            for e in bundle.get("entry", [])
            if e["resource"]["resourceType"] == resource_type
        ]
    return any(fhirpathpy.evaluate(r, path, model=models["r4"]) for r in resources)


def all_rows():
    registry.load()
    return [(m, row) for m in declared.all_maps() for row in m.rows]


def test_every_declared_row_is_well_formed():
    rows = all_rows()
    assert len(rows) >= 45
    for segment_map, row in rows:
        assert row.v2.startswith(segment_map.segment + "-"), row
        assert row.fhir.startswith(segment_map.resource + "."), row
        assert fhirpath_syntax_error(row.fhir) is None, row
        assert row.transform.strip(), row


def test_message_tables_name_their_handler_and_segments():
    adt = declared.table("ADT^A01")
    assert adt.handler.endswith("messages.adt.adt")
    assert [m.segment for m in adt.maps][:4] == ["MSH", "PID", "PD1", "PV1"]
    assert adt.undeclared == ()  # PDA and ACC are proven on the hand-made samples
    assert declared.table("ADT^A40").segments == ("MSH", "PID", "PD1", "MRG")
    assert declared.table("ZZZ^Z01") is None
    for code in registry.supported_codes():
        for event in registry.supported_events(code):
            found = declared.table(f"{code}^{event}")
            assert found.segments, f"{code}^{event}: its map declares no segments"
            assert not found.undeclared, f"{code}^{event}: no rows for {found.undeclared}"


def test_declared_rows_match_what_conversion_produces(corpus):
    exercised = set()
    conditional_seen = defaultdict(bool)
    failures = []
    converted = 0
    for path, message in corpus_messages(corpus):
        try:
            bundle = convert(message, check=False).bundle
        except MappingError:
            continue
        converted += 1
        table = declared.table(message.message_type)
        for segment_map in table.maps:
            for row in segment_map.rows:
                if not present(message, row.v2):
                    continue
                exercised.add(row)
                found = has_value(bundle, segment_map.resource, row.fhir)
                if row.when:
                    conditional_seen[row] |= found
                elif not found:
                    failures.append(f"{path.name}: {row.v2} present, {row.fhir} empty")
    assert converted >= 40
    assert not failures, "\n".join(failures)
    never = [r for r, seen in conditional_seen.items() if not seen]
    assert not never, f"conditional rows never written: {never}"
    rows = {row for _, row in all_rows()}
    missing = sorted(r.v2 for r in rows - exercised)
    # Every row is proven on a message: one no corpus message carries is proven on a sample.
    assert not missing, f"rows no corpus message or sample carries: {missing}"


@pytest.mark.parametrize("message_type", ["ADT^A01", "ORU^R01", "VXU^V04"])
def test_tables_list_rows_in_declaration_order(message_type):
    table = declared.table(message_type)
    pid = next(m for m in table.maps if m.segment == "PID")
    assert pid.rows[0].v2 == "PID-3"
    assert pid.function.endswith("segments.patient.map_patient")


def resources_of(message_type: str, segment: str) -> list[str]:
    return [m.resource for m in declared.table(message_type).maps if m.segment == segment]


def test_a_segment_shows_the_resource_its_message_map_makes_of_it():
    assert resources_of("ORM^O01", "OBR") == ["ServiceRequest"]
    assert resources_of("MDM^T02", "OBR") == ["ServiceRequest"]
    assert resources_of("MDM^T02", "OBX") == ["DocumentReference"]  # the document's content
    assert sorted(resources_of("ORU^R01", "OBR")) == ["DiagnosticReport", "ServiceRequest"]
    assert resources_of("RDE^O11", "ORC") == ["MedicationRequest"]
    assert resources_of("VXU^V04", "RXR") == ["Immunization"]
    assert resources_of("SIU^S12", "NTE") == ["Appointment"]
    assert declared.table("ORU^R01").segments.count("NTE") == 1  # listed once, two tables


def test_every_resource_a_message_map_names_is_declared():
    """``OBR:ServiceReqest`` (a typo) would quietly list OBR as unlisted: refused here."""
    known = {(m.segment, m.resource) for m in declared.all_maps()}
    for handler in set(registry._HANDLERS.values()):
        for token in registry.segments_of(handler):
            segment, _, resource = token.partition(":")
            assert not resource or (segment, resource) in known, f"{handler.__name__}: {token}"


def test_a_segment_is_declared_once_per_resource():
    registry.load()
    with pytest.raises(ValueError, match="OBR -> DiagnosticReport already declared"):
        declared.fields("OBR", "DiagnosticReport", ("OBR-4", "DiagnosticReport.code", "CWE"))(
            lambda ctx: None
        )
