"""What other segments say about the patient or the charge lands where the IG puts it: PID-9
and PID-40, IN2 and a GT1 of the patient itself -> Patient; FT1-29/42/43 -> MedicationDispense;
FT1 in orders and results -> ChargeItem."""

from __future__ import annotations

from adapters.mapping import convert

from .conftest import PID, PV1, message, one, oru, resources

IN1 = (
    "IN1|1|BAV^Blue Advantage|IC-1^^^BCBS&1.2.3&ISO|Blue Cross||||||||||||||||||||||||||||||||PN-1"
)
IN2 = "IN2||||||MC-55|Poor^Patty|MA-66||MIL-77" + "|" * 51 + "MEM-88^^^HOSP&1.2.3.4.5&ISO^MB"
GT1_SELF = (
    "GT1|1|G-1^^^HOSP&1.2.3.4.5&ISO|Everyman^Adam|Paying^Person|9 Bill St^^Payville^IL^62702"
    "|^PRN^PH^^^217^5550001|||||SEL|123-45-6789"
)
FT1 = (
    "FT1|1|TX-9||20240301|20240301|CG|71045^Xray chest^C4|||2|100&USD"
    + "|" * 18
    + "0182-1061-05^ASPIRIN EC^NDC"
    + "|" * 13
    + "RX-42|5^385049006&Capsule&SCT"
)


def test_alias_and_v27_telecom_join_the_patient(convert_segments):
    fields = PID.split("|") + [""] * 30
    fields[9] = "Everyman^Eddie"
    fields[40] = "^WPN^Internet^adam@work.example"
    patient = one(convert_segments("A01", "|".join(fields)), "Patient")
    assert {"family": "Everyman", "given": ["Eddie"]} in [
        {k: n[k] for k in ("family", "given") if k in n} for n in patient["name"]
    ]
    assert "adam@work.example" in [t["value"] for t in patient["telecom"]]


def test_in2_numbers_and_medicaid_name_join_the_patient(convert_segments):
    patient = one(convert_segments("A01", PID, IN1, IN2), "Patient")
    values = {
        i["value"]: i.get("type", {}).get("coding", [{}])[0].get("code")
        for i in patient["identifier"]
    }
    assert values["MC-55"] == "MC" and values["MA-66"] == "MA"
    assert values["MIL-77"] == "MI" and values["MEM-88"] == "MB"
    assert "Poor" in [n.get("family") for n in patient["name"]]


def test_guarantor_who_is_the_patient_adds_to_the_patient(convert_segments):
    result = convert_segments("A01", PID, GT1_SELF)
    patient = one(result, "Patient")
    assert {"G-1", "123-45-6789"} <= {i["value"] for i in patient["identifier"]}
    assert "Payville" in [a.get("city") for a in patient["address"]]
    assert "RelatedPerson" not in [e["resource"]["resourceType"] for e in result.bundle["entry"]]


def test_other_guarantor_stays_a_related_person(convert_segments):
    result = convert_segments("A01", PID, GT1_SELF.replace("|SEL|", "|BRO|"))
    patient = one(result, "Patient")
    assert "G-1" not in {i["value"] for i in patient["identifier"]}
    assert resources(result, "RelatedPerson")


def test_ft1_drug_becomes_a_medication_dispense():
    result = convert(
        message(
            "MSH|^~\\&|BILL|FAC|EHR|HUB|20240301101500+0100||DFT^P03|DFT-1|P|2.8",
            "EVN|P03|20240301",
            PID,
            PV1,
            FT1,
        )
    )
    dispense = one(result, "MedicationDispense")
    assert dispense["medicationCodeableConcept"]["coding"][0]["code"] == "0182-1061-05"
    assert dispense["quantity"] == {"value": 5, "unit": "Capsule"}
    assert dispense["authorizingPrescription"][0]["identifier"]["value"] == "RX-42"
    assert dispense["status"] == "unknown"
    assert one(result, "ChargeItem")["quantity"] == {"value": 2}


def test_ft1_in_a_result_message_becomes_a_charge():
    result = convert(oru(PID, "OBR|1|P-1|F-1|718-7^Hemoglobin^LN", FT1))
    assert one(result, "ChargeItem")["code"]["coding"][0]["code"] == "71045"


def test_mothers_identifier_becomes_a_related_person(convert_segments):
    fields = PID.split("|") + [""] * 30
    fields[21] = "M-77^^^HOSP&1.2.3.4.5&ISO^MR"
    result = convert_segments("A01", "|".join(fields))
    [mother] = resources(result, "RelatedPerson")
    assert mother["identifier"][0]["value"] == "M-77"
    assert mother["relationship"][0]["coding"][0]["code"] == "MTH"


def test_pending_location_is_a_planned_encounter_location(convert_segments):
    result = convert_segments("A01", PID, PV1, "PV2|5W^512^A^GOOD HEALTH")
    locations = one(result, "Encounter")["location"]
    assert [(loc["location"]["display"], loc["status"]) for loc in locations] == [
        ("4E 401 B", "active"),
        ("5W 512 A", "planned"),
    ]


def test_pharmacy_order_carries_the_guarantor_and_insurance(convert_segments):
    result = convert(
        message(
            "MSH|^~\\&|PHARM|FAC|EHR|HUB|20240301101500+0100||RDE^O11|RDE-1|P|2.8",
            PID,
            IN1,
            GT1_SELF.replace("|SEL|", "|BRO|"),
            "ORC|NW|ORD-1",
            "RXE||00047040230^Ampicillin 250 mg caps^NDC|2||caps^capsule",
        )
    )
    assert one(result, "Coverage") and resources(result, "RelatedPerson")


def test_parent_order_becomes_the_request_this_one_is_based_on():
    result = convert(
        message(
            "MSH|^~\\&|LAB|FAC|EHR|HUB|20240301101500+0100||ORM^O01|ORM-1|P|2.5.1",
            PID,
            "ORC|NW|P-2^LAB||||||PAR-P^PAR-F",
            "OBR|1|P-2^LAB||718-7^Hemoglobin^LN",
        )
    )
    parent, child = sorted(resources(result, "ServiceRequest"), key=lambda r: "code" in r)
    assert [i["value"] for i in parent["identifier"]] == ["PAR-P", "PAR-F"]
    parent_url = next(e["fullUrl"] for e in result.bundle["entry"] if e["resource"] is parent)
    assert child["basedOn"] == [{"reference": parent_url}]


def test_referral_becomes_a_service_request(convert_segments):
    rf1 = (
        "RF1|P^Pending^HL70283|A^ASAP^HL70280|EXTERNAL|||REF-1^name|||19900501|R-1^Reason^C4|REF-2"
    )
    request = one(convert_segments("A01", PID, rf1), "ServiceRequest")
    assert request["status"] == "on-hold" and request["intent"] == "order"
    assert [i["value"] for i in request["identifier"]] == ["REF-1", "REF-2"]
    assert request["reasonCode"][0]["coding"][0]["code"] == "R-1"
    assert request["priority"] == "asap"


def test_rxo_becomes_the_original_order_the_encoded_one_is_based_on():
    result = convert(
        message(
            "MSH|^~\\&|PHARM|FAC|EHR|HUB|20240301101500+0100||RDE^O11|RDE-2|P|2.8",
            PID,
            "ORC|NW|ORD-2",
            "RXO|00047040230^Ampicillin 250 mg caps^NDC|2||caps^capsule|||||G||10|caps^capsule|3",
            "RXE||0143963401^Nicardipine bag^NDC|5||mg",
        )
    )
    by_intent = {r["intent"]: r for r in resources(result, "MedicationRequest")}
    original, encoded = by_intent["original-order"], by_intent["order"]
    assert original["medicationCodeableConcept"]["coding"][0]["code"] == "00047040230"
    assert original["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 2
    assert original["dispenseRequest"]["quantity"]["value"] == 10
    assert original["dispenseRequest"]["numberOfRepeatsAllowed"] == 3
    url = next(e["fullUrl"] for e in result.bundle["entry"] if e["resource"] is original)
    assert encoded["basedOn"] == [{"reference": url}]


def test_account_number_and_billing_account_become_accounts():
    fields = PID.split("|") + [""] * 30
    fields[18] = "AC-1^^^HOSP&1.2.3.4.5&ISO^AN"
    result = convert(oru("|".join(fields), "OBR|1|P-1|F-1|718-7^Hemoglobin^LN", "BLG||CR|AI-7"))
    numbers = sorted(a["identifier"][0]["value"] for a in resources(result, "Account"))
    assert numbers == ["AC-1", "AI-7"]


def test_disabled_patients_identifier_joins_the_patient(convert_segments):
    result = convert_segments("A01", PID, "DB1|1|PT|DB-9^^^HOSP&1.2.3.4.5&ISO^MR|Y")
    assert "DB-9" in {i["value"] for i in one(result, "Patient")["identifier"]}
    other = convert_segments("A01", PID, "DB1|1|SP|DB-8^^^HOSP&1.2.3.4.5&ISO^MR|Y")
    assert "DB-8" not in {i["value"] for i in one(other, "Patient")["identifier"]}
