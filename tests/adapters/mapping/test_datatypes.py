"""Datatype maps (v2 -> FHIR): DTM/TS, CX, XPN, XAD, XTN, CWE, HD, NM, SN, reference ranges."""

from __future__ import annotations

import pytest

from adapters.codecs import hl7v2
from adapters.mapping import datatypes as dt
from adapters.mapping.datatypes import BadValue, Comps


def comps(raw: str) -> Comps:
    return Comps(raw, hl7v2.DEFAULT_ENCODING)


@pytest.mark.parametrize(
    ("text", "as_datetime", "as_date"),
    [
        ("1961", "1961", "1961"),
        ("196106", "1961-06", "1961-06"),
        ("19610615", "1961-06-15", "1961-06-15"),
        ("1961061510", "1961-06-15T10:00:00+00:00", "1961-06-15"),
        ("196106151030", "1961-06-15T10:30:00+00:00", "1961-06-15"),
        ("19610615103045", "1961-06-15T10:30:45+00:00", "1961-06-15"),
        ("19610615103045.123", "1961-06-15T10:30:45.123+00:00", "1961-06-15"),
        ("19610615103045-0800", "1961-06-15T10:30:45-08:00", "1961-06-15"),
        ("198808181126+0215", "1988-08-18T11:26:00+02:15", "1988-08-18"),
    ],
)
def test_dtm_keeps_the_senders_precision(text, as_datetime, as_date):
    parsed = dt.parse_dtm(text)
    assert parsed.datetime_text("+00:00") == as_datetime
    assert parsed.date_text() == as_date


def test_dtm_instant_pads_a_date_to_midnight_in_the_default_zone():
    assert dt.parse_dtm("20240301").instant_text("+01:00") == "2024-03-01T00:00:00+01:00"
    assert dt.parse_dtm("2024030110-0500").instant_text("+01:00") == "2024-03-01T10:00:00-05:00"


@pytest.mark.parametrize(
    "text", ["Aug 15, 1942", "19421315", "19420230", "2024030125", "202403011061", "20240301+2500"]
)
def test_dtm_rejects_what_the_standard_does_not_allow(text):
    with pytest.raises(BadValue):
        dt.parse_dtm(text)


def test_dtm_empty_and_explicit_null_are_absent():
    assert dt.parse_dtm("") is None
    assert dt.parse_dtm('""') is None


def test_cx_identifier_with_oid_authority_type_and_period():
    ident = dt.cx(comps("12345^^^HOSP&1.2.3.4&ISO^MR^^20200101^20251231"))
    assert ident == {
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
        },
        "system": "urn:oid:1.2.3.4",
        "value": "12345",
        "period": {"start": "2020-01-01", "end": "2025-12-31"},
        "assigner": {"display": "HOSP"},
    }


def test_cx_namespace_only_authority_becomes_a_local_urn():
    assert dt.cx(comps("A1^^^MSH MRN^MR"))["system"] == "urn:id:MSH%20MRN"


def test_cx_without_value_is_absent():
    assert dt.cx(comps("^^^HOSP^MR")) is None


def test_xpn_maps_family_given_prefix_suffix_and_use():
    name = dt.xpn(comps("Everyman&&&&Aniston^Adam^A^III^Dr^MD^L"))
    assert name == {
        "use": "official",
        "family": "Everyman",
        "given": ["Adam", "A"],
        "prefix": ["Dr"],
        "suffix": ["III", "MD"],
    }


def test_xpn_maiden_name_use():
    assert dt.xpn(comps("Smith^Angela^^^^^M"))["use"] == "maiden"


def test_xad_lines_city_state_zip_country_and_use():
    address = dt.xad(comps("1 Main St^Apt 2^Springfield^IL^62701^USA^H^^Sangamon"))
    assert address == {
        "use": "home",
        "line": ["1 Main St", "Apt 2"],
        "city": "Springfield",
        "district": "Sangamon",
        "state": "IL",
        "postalCode": "62701",
        "country": "USA",
    }


def test_xad_mailing_type_and_street_number_apart():
    address = dt.xad(comps("1000&Hospital Lane^^Ann Arbor ^MI^99999^USA^M"))
    assert address["type"] == "postal"
    assert address["line"] == ["1000", "Hospital Lane"]
    assert address["city"] == "Ann Arbor"


def test_xad_street_name_already_in_the_street_line_is_not_repeated():
    address = dt.xad(comps("12 Main St&Main St&12^Apt 4"))
    assert address["line"] == ["12 Main St", "Apt 4"]


def test_xtn_unformatted_number_wins_over_the_deprecated_one():
    point = dt.xtn(comps("78788788^^CP^^^^1111^^^^^2222"))
    assert point["value"] == "2222" and point["use"] == "mobile"


def test_xtn_composes_a_number_from_its_parts():
    point = dt.xtn(comps("^PRN^PH^^1^217^5551234^99"))
    assert point == {"system": "phone", "value": "+1 (217) 5551234 ext. 99", "use": "home"}


def test_xtn_email_and_mobile():
    assert dt.xtn(comps("^NET^Internet^adam@example.org")) == {
        "system": "email",
        "value": "adam@example.org",
    }
    assert dt.xtn(comps("5551234^^CP"))["use"] == "mobile"


def test_xtn_old_style_number_keeps_default_use():
    assert dt.xtn(comps("(555)555-1234"), "work") == {
        "system": "phone",
        "value": "(555)555-1234",
        "use": "work",
    }


def test_cwe_primary_and_alternate_coding_with_original_text():
    concept = dt.cwe(comps("8867-4^Heart rate^LN^HR^Pulse^99LOCAL^^^heart beat"))
    assert concept == {
        "coding": [
            {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
            {"system": "urn:v2:cs:99LOCAL", "code": "HR", "display": "Pulse"},
        ],
        "text": "heart beat",
    }


def test_cwe_hl7_table_names_map_to_terminology_hl7_org():
    concept = dt.cwe(comps("M^Married^HL70002"))
    assert concept["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0002"


def test_cwe_text_only_and_default_system():
    assert dt.cwe(comps("^Chest pain")) == {"text": "Chest pain"}
    concept = dt.cwe(comps("CH"), "http://terminology.hl7.org/CodeSystem/v2-0074")
    assert concept["coding"][0]["system"].endswith("v2-0074")


@pytest.mark.parametrize(
    ("namespace", "uid", "kind", "system"),
    [
        ("HOSP", "1.2.3", "ISO", "urn:oid:1.2.3"),
        ("", "1.2.3", "", "urn:oid:1.2.3"),
        (
            "",
            "6B29FC40-CA47-1067-B31D-00DD010662DA",
            "UUID",
            "urn:uuid:6b29fc40-ca47-1067-b31d-00dd010662da",
        ),
        ("", "http://x.org/ids", "URI", "http://x.org/ids"),
        ("HOSP", "", "", "urn:id:HOSP"),
        ("", "", "", None),
    ],
)
def test_hd_to_system(namespace, uid, kind, system):
    from adapters.mapping import codesystems

    assert codesystems.hd_system(namespace, uid, kind) == system


@pytest.mark.parametrize(
    ("text", "value"),
    [("4.41", 4.41), ("+5", 5), ("007", 7), (".5", 0.5), ("5.", 5), ("-2.0", -2.0)],
)
def test_nm_is_normalised_to_a_fhir_decimal(text, value):
    assert dt.decimal(text) == value


@pytest.mark.parametrize("text", [">5", "1,5", "abc", "1.2.3"])
def test_nm_rejects_text(text):
    with pytest.raises(BadValue):
        dt.decimal(text)


UNITS = comps("mg/dL^milligram per deciliter^UCUM")


def test_sn_forms():
    assert dt.sn(comps("^182"), UNITS) == (
        "valueQuantity",
        {
            "value": 182,
            "unit": "milligram per deciliter",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    )
    name, value = dt.sn(comps("<^5"), None)
    assert (name, value) == ("valueQuantity", {"value": 5, "comparator": "<"})
    name, value = dt.sn(comps("^10^-^20"), None)
    assert (name, value) == ("valueRange", {"low": {"value": 10}, "high": {"value": 20}})
    name, value = dt.sn(comps("^1^:^128"), None)
    assert (name, value) == (
        "valueRatio",
        {"numerator": {"value": 1}, "denominator": {"value": 128}},
    )


def test_sn_rejects_a_bad_comparator():
    with pytest.raises(BadValue):
        dt.sn(comps("~~^5"), None)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("3.5-5.0", 3.5, 5.0),
        ("13 to 18", 13, 18),
        ("<5", None, 5),
        (">=60", 60, None),
        ("4.50&5.90", "4.50", "5.90"),  # written digits kept (exact decimals)
    ],
)
def test_reference_range(text, low, high):
    rng = dt.reference_range(text, None)
    assert _written(rng.get("low", {}).get("value")) == _written(low)
    assert _written(rng.get("high", {}).get("value")) == _written(high)


def _written(value):
    return None if value is None else str(value)


def test_reference_range_free_text():
    assert dt.reference_range("negative", None) == {"text": "negative"}


def test_xad_addressee_is_a_line_of_its_own():
    address = dt.xad(comps("1 Main St^^Springfield^IL" + "^" * 15 + "c/o Jane Roe"))
    assert address["line"] == ["1 Main St", "c/o Jane Roe"]


def test_xpn_called_by_is_a_nickname():
    assert dt.called_by(comps("Everyman^Adam" + "^" * 13 + "Addy")) == {
        "use": "nickname",
        "given": ["Addy"],
    }
    assert dt.called_by(comps("Everyman^Adam")) is None


def test_nm_keeps_its_written_digits():
    from decimal import Decimal

    from adapters.codecs import exact_json
    from adapters.mapping import datatypes

    assert datatypes.decimal("1.50") == Decimal("1.50")
    assert str(datatypes.decimal("+007.50")) == "7.50"
    assert str(datatypes.decimal("-.50")) == "-0.50"
    assert datatypes.decimal("1.5") == 1.5 and type(datatypes.decimal("1.5")) is float
    assert datatypes.decimal("12") == 12 and datatypes.decimal("12.") == 12
    assert exact_json.dumps({"v": datatypes.decimal("3.14159265358979323846")}) == (
        '{"v": 3.14159265358979323846}'
    )
