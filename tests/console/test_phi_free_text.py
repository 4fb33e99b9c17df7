"""The one masking function for outside text (console.phi.mask_free_text), the PHI values it is
driven by (message_phi), and body masking (mask_body). Pure functions: no database."""

from __future__ import annotations

import json

from adapters.codecs import custom_json, hl7v2
from adapters.mapping.convert import convert
from console.phi import (
    MASK,
    NO_PHI,
    UNKNOWN_PHI,
    mask_body,
    mask_free_text,
    message_phi,
    phi_of_values,
)
from tests import factories

ADT = factories.adt_a01("FREE-1", family="ZZQXHERON", mrn="MRN-41207")
RAW = ADT.decode()
BUNDLE = convert(hl7v2.parse(ADT)).bundle


def test_an_hl7_message_gives_its_people_s_values_not_its_codes():
    phi = message_phi(RAW)
    for value in ["ZZQXHERON", "jane", "MRN-41207", "19800101", "1980-01-01", "1 MAIN ST"]:
        assert value in phi, value
    assert "SPRINGFIELD" in phi and "555-1234" in phi  # city, phone
    for code in ["F", "MR", "IL", "HOSP1", "EPIC", "ADT", "WELBY"]:  # sex, types, sender, doctor
        assert code not in phi, code


def test_the_canonical_bundle_gives_the_same_people_without_the_clinicians():
    phi = message_phi(canonical=BUNDLE)
    for value in ["ZZQXHERON", "JANE", "MRN-41207", "1980-01-01", "SPRINGFIELD"]:
        assert value in phi, value
    assert "WELBY" not in phi and "MARCUS" not in phi  # a practitioner is not PHI here
    assert "official" not in phi and "home" not in phi  # uses and systems are codes


def test_a_sender_s_own_json_gives_every_value():
    body = json.dumps({"patient": {"last": "Lindqvist", "mrn": "M-5150"}, "n": 3})
    phi = message_phi(body, None, custom_json.MEDIA_TYPE)
    assert "Lindqvist" in phi and "M-5150" in phi


def test_a_json_body_that_does_not_parse_gives_its_string_values_not_its_keys():
    cut = '{"id": "ZQX-1", "name": [{"family": "ZZQXCUT", "given": ["Albertine Ro'
    phi = message_phi(cut, None, "application/fhir+json")
    assert "ZQX-1" in phi and "ZZQXCUT" in phi and "Albertine Ro" in phi and "Albertine" in phi
    assert "family" not in phi and "resourceType" not in phi
    assert message_phi("", None) == NO_PHI


def test_unquoted_values_are_masked_whatever_their_case_and_the_reason_stays():
    phi = message_phi(RAW, BUNDLE)
    text = "Patient Zzqxheron, Jane (MRN-41207) born 1980-01-01 rejected: duplicate record"
    assert (
        mask_free_text(text, phi)
        == f"Patient {MASK}, {MASK} ({MASK}) born {MASK} rejected: duplicate record"
    )


def test_a_value_is_masked_as_a_whole_word_not_inside_another():
    phi = phi_of_values(["ANN", "12345"])
    assert mask_free_text("ANNOUNCE to ANN, ref Patient/12345 of 123456", phi) == (
        f"ANNOUNCE to {MASK}, ref Patient/{MASK} of {MASK}"  # the last one: a long number
    )
    assert mask_free_text("id MRN12345 and ANN2", phi) == f"id MRN{MASK} and {MASK}2"


def test_short_values_are_codes_and_are_not_looked_for():
    assert phi_of_values(["F", "MR", "400", "IL", ""]) == NO_PHI
    assert mask_free_text("answered 400 for F", phi_of_values(["F", "400"])) == "answered 400 for F"


def test_phi_looking_patterns_are_masked_without_a_message():
    text = (
        "ssn 123-45-6789 tel (937) 555-0199, 555-0100 or 937.555.0101 mail a.b@x.org"
        " born 1975-12-31 or 12/31/1975, record 20240102050000"
    )
    masked = mask_free_text(text)
    assert masked == (
        f"ssn {MASK} tel {MASK}, {MASK} or {MASK} mail {MASK} born {MASK} or {MASK}, record {MASK}"
    )


def test_what_is_not_phi_stays_readable():
    for text in [
        "the sender's MSH-2 is odd",
        "frame of 5242880 bytes refused after 30000 ms",
        "POST http://127.0.0.1:8080/fhir answered 503 Service Unavailable",
        "gave up after 5 attempts: timed out",
    ]:
        assert mask_free_text(text, message_phi(RAW)) == text


def test_quotes_and_hl7_fragments_are_still_masked():
    assert mask_free_text("date '19XX0101' is no date") == f"date '{MASK}' is no date"
    assert "ALICE" not in mask_free_text("bad segment PID|1||ALICE^SMITH")


def test_issues_keep_where_and_why_and_lose_the_values():
    phi = message_phi(RAW)
    issues = [
        {
            "severity": "error",
            "code": "duplicate",
            "diagnostics": "ZZQXHERON JANE already exists",
            "expression": ["Patient.name[0]"],
        },
        {"field": "PID-7", "value": "19800101", "reason": "no zone", "target": "Patient.birthDate"},
    ]
    assert mask_free_text(issues, phi) == [
        {
            "severity": "error",
            "code": "duplicate",
            "diagnostics": f"{MASK} {MASK} already exists",
            "expression": ["Patient.name[0]"],
        },
        {"field": "PID-7", "value": MASK, "reason": "no zone", "target": "Patient.birthDate"},
    ]
    assert mask_free_text(None, phi) is None and mask_free_text("", phi) == ""


def test_bodies_are_masked_by_kind_and_a_body_that_does_not_parse_whole():
    assert "ZZQXHERON" not in mask_body(RAW, "x-application/hl7-v2+er7")
    fhir = json.loads(mask_body(json.dumps(BUNDLE), "application/fhir+json"))
    assert fhir["resourceType"] == "Bundle" and "ZZQXHERON" not in json.dumps(fhir)
    own = mask_body('{"last": "Lindqvist"}', custom_json.MEDIA_TYPE)
    assert json.loads(own) == {"last": MASK}
    assert (
        mask_body('{"resourceType": "Patient", "name": [{"family": "ZZQX', "application/fhir+json")
        == MASK
    )
    assert mask_body("[" * 100_000, "application/fhir+json") == MASK  # too deep to parse
    assert mask_body("", "application/fhir+json") == ""


def test_a_visit_number_identifies_as_a_record_number_does():
    raw = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPV1|1|I" + "|" * 17 + "V-770041^^^HOSP\r"
    assert "V-770041" in message_phi(raw)


def test_with_the_values_unknown_every_text_is_masked_whole_but_where_and_what_kind():
    issue = {"severity": "error", "code": "duplicate", "diagnostics": "Jane Roe exists"}
    assert mask_free_text("answered 409: Jane Roe exists", UNKNOWN_PHI) == MASK
    assert mask_free_text(issue, UNKNOWN_PHI) == {**issue, "diagnostics": MASK}
    assert message_phi(RAW, BUNDLE, pruned=True) == UNKNOWN_PHI
