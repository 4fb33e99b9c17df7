"""The hand-made samples (samples/README.md) through the whole conversion with R4B validation,
and the values a user gets from the fields only they carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.codecs import hl7v2
from adapters.mapping import convert, declared
from tests.adapters.mapping.conftest import entry_of, one, resources

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str):
    return convert(hl7v2.parse((SAMPLES / name).read_bytes()), check=True)


def by_code(result, resource_type: str, code: str) -> dict:
    return next(
        r for r in resources(result, resource_type) if r["code"]["coding"][0]["code"] == code
    )


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.hl7")), ids=lambda p: p.stem)
def test_every_sample_converts_to_a_valid_bundle_with_every_segment_listed(path):
    message = hl7v2.parse(path.read_bytes())
    result = convert(message, check=True)  # raises on an invalid R4B resource
    assert result.ok, [str(i) for i in result.issues if i.severity == "error"]
    assert declared.table(message.message_type).undeclared == ()


def test_an_omp_order_keeps_its_notes_prescriber_and_date():
    request = one(sample("omp_o09_v27_prescription_note.hl7"), "MedicationRequest")
    assert request["intent"] == "order"
    assert request["note"] == [
        {"text": "Take in the morning; recheck blood pressure in two weeks."}
    ]
    assert request["requester"]["display"] == "Rosa Alvarez MD"
    assert request["authoredOn"] == "2025-01-02T10:12:00-08:00"


def test_an_administration_names_the_order_its_orc_carries_without_overwriting_it():
    result = sample("ras_o17_v251_administration.hl7")
    order = one(result, "MedicationRequest")
    assert [i["value"] for i in order["identifier"]] == ["MED-99120", "MED-99120-F"]
    assert order["requester"]["display"] == "Ivana Novak MD"
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "00409-6102-02"
    request = entry_of(result, order)["request"]
    assert request["method"] == "POST" and "ifNoneExist" in request  # the pharmacy's record wins
    given, refused = resources(result, "MedicationAdministration")
    assert given["request"]["reference"] == entry_of(result, order)["fullUrl"]
    assert given["effectivePeriod"] == {
        "start": "2023-01-05T22:00:00-06:00",
        "end": "2023-01-05T22:15:00-06:00",
    }
    assert given["dosage"]["method"]["coding"][0]["code"] == "IVP"
    assert refused["status"] == "not-done" and "dosage" not in refused  # 999: amount unknown
    assert refused["statusReason"][0]["coding"][0]["display"] == "Patient refused"


def test_an_administration_entered_in_error():
    given = one(sample("ras_o17_v28_entered_in_error.hl7"), "MedicationAdministration")
    assert given["status"] == "entered-in-error"
    assert given["request"]["reference"]


def test_a_dispense_keeps_its_lot_substitution_and_route():
    dispense = one(sample("rds_o13_v26_dispense.hl7"), "MedicationDispense")
    assert dispense["whenHandedOver"] == "2017-08-30T14:15:00+01:00"
    assert dispense["quantity"]["value"] == 1
    assert dispense["substitution"] == {"wasSubstituted": False}
    assert {"text": "lot LOT77120B, expires 20190131"} in dispense["note"]
    assert dispense["dosageInstruction"][0]["site"]["coding"][0]["code"] == "RA"


def test_an_encoded_order_keeps_substitution_indication_method_and_filler_number():
    request = one(sample("rde_o11_v24_encoded_order.hl7"), "MedicationRequest")
    assert request["substitution"] == {"allowedBoolean": False}
    assert request["reasonCode"][0]["coding"][0]["code"] == "A41.9"
    assert request["dosageInstruction"][0]["method"]["coding"][0]["code"] == "IVPB"
    assert "PH-552013" in [i["value"] for i in request["identifier"]]
    assert request["note"] == [{"text": "Renal dosing reviewed by pharmacist on admission."}]


def test_death_and_autopsy_details():
    result = sample("adt_a03_v251_death_pda.hl7")
    autopsy = by_code(result, "Observation", "autopsy")
    assert autopsy["effectivePeriod"]["end"] == "2023-09-18T12:30:00-05:00"
    assert autopsy["performer"][0]["display"] == "Louis Whitcombe MD"
    assert (
        by_code(result, "Observation", "coroner")["valueCodeableConcept"]["coding"][0]["code"]
        == "N"
    )
    assert one(result, "Encounter")["type"] == [{"text": "Heart failure admission"}]


def test_an_accident_described_or_only_coded():
    described = one(sample("adt_a04_v28_accident_acc.hl7"), "Observation")
    assert described["valueString"].startswith("Fell from a ladder")
    flags = {
        c["code"]["coding"][0]["code"]: c["valueCodeableConcept"] for c in described["component"]
    }
    assert flags["AJRI"]["coding"][0]["code"] == "Y" and flags["PNI"]["coding"][0]["code"] == "Y"
    coded = one(sample("adt_a01_v23_accident_acc.hl7"), "Observation")
    assert coded["valueCodeableConcept"]["coding"][0]["code"] == "MV"


def test_problem_actions_confirmation_and_resolution():
    result = sample("ppr_pc1_v25_problems.hl7")
    diabetes, asthma, reflux = resources(result, "Condition")
    assert diabetes["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert diabetes["onsetString"] == "Onset in late 2018, per patient"
    assert asthma["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert asthma["abatementDateTime"] == "2022-03-01"
    assert reflux["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in reflux


def test_the_replaced_patient_keeps_its_name_the_report_its_period_the_charge_its_enterer():
    replaced = next(
        p
        for p in resources(sample("adt_a40_v25_mrg_name.hl7"), "Patient")
        if p.get("active") is False
    )
    assert replaced["name"][0]["family"] == "Ramires"
    report = one(sample("oru_r01_v24_collection_period.hl7"), "DiagnosticReport")
    assert report["effectivePeriod"]["end"].startswith("2019-07-21T07:00:00")
    charge = one(sample("dft_p03_v25_enterer.hl7"), "ChargeItem")
    assert charge["enterer"]["display"] == "Jin Park MD"


def test_a_procedure_named_only_in_words_and_a_guarantor_who_is_the_patient():
    result = sample("adt_a08_v24_procedure_text_guarantor_self.hl7")
    assert one(result, "Procedure")["code"] == {"text": "Appendectomy, laparoscopic"}
    assert one(result, "Coverage")["order"] == 2
    patient = one(result, "Patient")
    account = one(result, "Account")
    assert account["guarantor"][0]["party"]["reference"] == entry_of(result, patient)["fullUrl"]
    assert not resources(result, "RelatedPerson")
    values = {i["value"] for i in patient["identifier"]}
    assert {"G5520931", "471-22-9083", "E-20931"} <= values  # GT1-2, GT1-12, GT1-19
    assert {"value": "+1 (218) 5550190", "system": "phone", "use": "work"} in patient["telecom"]


def test_a_rejected_specimen_is_unavailable_with_its_condition():
    specimen = one(sample("oru_r01_v251_rejected_specimen.hl7"), "Specimen")
    assert specimen["status"] == "unavailable"
    assert specimen["condition"][0]["coding"][0]["code"] == "HEM"
