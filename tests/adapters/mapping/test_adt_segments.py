"""ADT's other segments: NK1, AL1, DG1, PR1, IN1/IN2, GT1, OBX; A24 links."""

from __future__ import annotations

from adapters.mapping import convert

from .conftest import PID, PV1, adt, entry_of, one, resources, seg


def test_nk1_becomes_a_related_person_of_the_patient(convert_segments):
    nk1 = "NK1|1|Everyman^Eve|SPO^Spouse^HL70063|1 Main St^^Springfield^IL|^PRN^PH^^1^217^5551235||EC^Emergency Contact^HL70131"
    result = convert_segments("A01", PID, nk1)
    person = one(result, "RelatedPerson")
    assert person["patient"]["reference"] == entry_of(result, one(result, "Patient"))["fullUrl"]
    assert person["name"][0]["family"] == "Everyman"
    codes = [c["code"] for r in person["relationship"] for c in r["coding"]]
    assert codes == ["SPS", "SPO", "EC"]
    assert person["telecom"][0]["use"] == "home"
    assert entry_of(result, person)["request"]["method"] == "PUT"


def test_nk1_contact_person_fields_add_a_name_phone_and_address(convert_segments):
    """IG NK1 -> RelatedPerson: NK1-30 is name[2], NK1-31 telecom, NK1-32 address[2]."""
    fields = [""] * 33
    fields[1:5] = ["1", "Everyman^Eve", "SPO", "1 Main St^^Springfield"]
    fields[30:33] = ["Everyman^Evelyn^M", "^PRN^PH^^1^217^5559876", "9 Side St^^Shelbyville"]
    nk1 = "NK1" + "|".join(fields)
    person = one(convert_segments("A01", PID, nk1), "RelatedPerson")
    assert [n["given"][0] for n in person["name"]] == ["Eve", "Evelyn"]
    assert [a["city"] for a in person["address"]] == ["Springfield", "Shelbyville"]
    assert person["telecom"][0]["value"] == "+1 (217) 5559876"


def test_an_organisation_nk1_is_a_patient_contact_with_its_contact_person(convert_segments):
    """IG NK1 -> Patient: NK1-13 -> contact.organization, NK1-30..32 -> its contact."""
    fields = [""] * 33
    fields[1], fields[3] = "1", "EMR^Employer^HL70063"
    fields[13] = "ACME Works^^^^^HOSP^XX^^^ACME-1"
    fields[30:33] = ["Boss^Bob", "^WPN^PH^^1^217^5550000", "1 Factory Rd^^Springfield"]
    nk1 = "NK1" + "|".join(fields)
    result = convert_segments("A01", PID, nk1)
    assert not resources(result, "RelatedPerson")
    [contact] = one(result, "Patient")["contact"]
    organization = one(result, "Organization")
    assert contact["organization"]["reference"] == entry_of(result, organization)["fullUrl"]
    assert contact["relationship"][0]["coding"][-1]["code"] == "EMR"
    assert organization["name"] == "ACME Works"
    assert organization["identifier"][0]["value"] == "ACME-1"
    [person] = organization["contact"]
    assert person["name"]["family"] == "Boss"
    assert person["telecom"][0]["use"] == "work"
    assert person["address"]["line"] == ["1 Factory Rd"]


def test_the_same_next_of_kin_is_the_same_resource_across_messages(convert_segments):
    nk1 = "NK1|1|Everyman^Eve|SPO^Spouse^HL70063"
    a = entry_of(r1 := convert_segments("A01", PID, nk1), one(r1, "RelatedPerson"))
    b = entry_of(r2 := convert_segments("A08", PID, nk1), one(r2, "RelatedPerson"))
    assert a["fullUrl"] == b["fullUrl"] and a["request"] == b["request"]


def test_al1_becomes_an_allergy(convert_segments):
    al1 = "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives~Wheezing|20100101"
    allergy = one(convert_segments("A01", PID, al1), "AllergyIntolerance")
    assert allergy["category"] == ["medication"]
    assert allergy["type"] == "allergy"
    assert allergy["criticality"] == "high"
    assert allergy["code"]["coding"][0]["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
    assert [m["text"] for m in allergy["reaction"][0]["manifestation"]] == ["Hives", "Wheezing"]
    assert allergy["reaction"][0]["severity"] == "severe"
    assert allergy["onsetDateTime"] == "2010-01-01"
    assert allergy["clinicalStatus"]["coding"][0]["code"] == "active"


def test_dg1_becomes_a_condition_and_an_encounter_diagnosis(convert_segments):
    dg1 = "DG1|1||I21.4^NSTEMI^I10|||A|||||||||1"
    result = convert_segments("A01", PID, PV1, dg1)
    condition = one(result, "Condition")
    assert condition["code"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/icd-10",
        "code": "I21.4",
        "display": "NSTEMI",
    }
    assert condition["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    diagnosis = one(result, "Encounter")["diagnosis"][0]
    assert diagnosis["condition"]["reference"] == entry_of(result, condition)["fullUrl"]
    assert diagnosis["use"]["coding"][0]["code"] == "A" and diagnosis["rank"] == 1


def test_dg1_v23_code_system_from_dg1_2(convert_segments):
    condition = one(
        convert_segments("A01", PID, "DG1|1|I9|440.21^ATHEROSCLEROSIS^I9|ATHEROSCLEROSIS"),
        "Condition",
    )
    assert condition["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-9-cm"


def test_pr1_becomes_a_completed_procedure(convert_segments):
    pr1 = "PR1|1||76164006^Biopsy of colon^SCT||200501251140+0100|D^Diagnostic^HL70230||||||121188^Surgeon^Sam"
    procedure = one(convert_segments("A01", PID, PV1, pr1), "Procedure")
    assert procedure["status"] == "completed"
    assert procedure["performedDateTime"] == "2005-01-25T11:40:00+01:00"
    assert procedure["performer"][0]["actor"]["display"] == "Sam Surgeon"


def test_in1_in2_become_a_coverage_with_its_payor(convert_segments):
    in1 = seg(
        "IN1",
        {
            1: "1",
            2: "PPO^Blue PPO",
            3: "BCBS123^^^BCBS&2.16.840.1.113883.3.1&ISO",
            4: "Blue Cross",
            5: "PO Box 1^^Durham^NC",
            7: "^WPN^PH^^1^800^5550000",
            8: "GRP-7",
            9: "Group Seven",
            12: "20240101",
            13: "20241231",
            16: "Everyman^Adam",
            17: "SEL^Self",
            18: "19610615",
            22: "1",
            36: "POL-99",
        },
    )
    result = convert_segments("A01", PID, in1, "IN2||||||MCR-1")
    coverage = one(result, "Coverage")
    payor = one(result, "Organization")
    assert coverage["payor"][0]["reference"] == entry_of(result, payor)["fullUrl"]
    assert payor["identifier"][0] == {
        "system": "urn:oid:2.16.840.1.113883.3.1",
        "value": "BCBS123",
        "assigner": {"display": "BCBS"},
    }
    assert coverage["status"] == "active"
    assert coverage["beneficiary"] == coverage["subscriber"]
    assert coverage["relationship"]["coding"][0]["code"] == "self"
    assert coverage["period"] == {"start": "2024-01-01", "end": "2024-12-31"}
    assert {c["type"]["coding"][0]["code"]: c["value"] for c in coverage["class"]} == {
        "plan": "PPO",
        "group": "GRP-7",
    }
    assert coverage["order"] == 1
    assert {"POL-99", "MCR-1"} <= {i["value"] for i in coverage["identifier"]}


def test_in1_for_a_spouse_names_a_related_person_as_subscriber(convert_segments):
    in1 = seg(
        "IN1",
        {
            1: "1",
            2: "PPO",
            3: "BCBS123^^^BCBS",
            4: "Blue Cross",
            16: "Everyman^Eve",
            17: "SPO^Spouse",
            18: "19650101",
        },
    )
    result = convert_segments("A01", PID, in1)
    coverage = one(result, "Coverage")
    spouse = one(result, "RelatedPerson")
    assert coverage["subscriber"]["reference"] == entry_of(result, spouse)["fullUrl"]
    assert spouse["birthDate"] == "1965-01-01"


def test_gt1_and_pid18_become_an_account_with_its_guarantor(convert_segments):
    pid = PID + "||4000776^^^HOSP&1.2.3.4.5&ISO^AN"  # PID-18
    gt1 = seg(
        "GT1",
        {
            1: "1",
            3: "Radiant^Lucy",
            5: "1619 South Univ^^Madison^WI",
            6: "^PRN^PH^^1^608^5551212",
            8: "19700101",
            9: "F",
            11: "MTH^Mother",
        },
    )
    result = convert_segments("A01", pid, gt1)
    account = one(result, "Account")
    assert account["identifier"][0]["value"] == "4000776"
    guarantor = one(result, "RelatedPerson")
    assert account["guarantor"][0]["party"]["reference"] == entry_of(result, guarantor)["fullUrl"]
    assert guarantor["relationship"][0]["coding"][0]["code"] == "MTH"


def test_gt1_self_guarantor_is_the_patient(convert_segments):
    result = convert_segments("A01", PID, seg("GT1", {1: "1", 3: "Everyman^Adam", 11: "SEL^Self"}))
    account = one(result, "Account")
    assert (
        account["guarantor"][0]["party"]["reference"]
        == entry_of(result, one(result, "Patient"))["fullUrl"]
    )


def test_adt_obx_becomes_an_observation(convert_segments):
    result = convert_segments("A01", PID, PV1, "OBX|1|NM|8867-4^Heart rate^LN||72|/min^^UCUM|||||F")
    obs = one(result, "Observation")
    assert obs["valueQuantity"]["value"] == 72
    assert obs["encounter"]["reference"] == entry_of(result, one(result, "Encounter"))["fullUrl"]


def test_a24_links_two_patient_records():
    result = convert(adt("A24", "PID|||MR1^^^XYZ^MR||Doe^Jane", "PID|||MR9^^^ABC^MR||Doe^Jane"))
    first, second = resources(result, "Patient")
    assert first["link"][0] == {
        "other": {"reference": entry_of(result, second)["fullUrl"]},
        "type": "seealso",
    }
    assert second["link"][0]["other"]["reference"] == entry_of(result, first)["fullUrl"]
