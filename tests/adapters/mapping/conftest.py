"""Small hand-made v2 messages for the map tests: each test states the segments it cares about."""

from __future__ import annotations

import pytest

from adapters.codecs import hl7v2
from adapters.mapping import convert

MSH_ADT = "MSH|^~\\&|REG|GOOD HEALTH^1.2.3.4^ISO|EHR|HUB|20240301101500+0100||ADT^{event}|CTRL-{event}|P|2.5.1"
MSH_ORU = "MSH|^~\\&|LAB|LABFAC^2.16.840.1.1^ISO|EHR|HUB|20240301101500-0500||ORU^R01^ORU_R01|LAB-77|P|2.5.1"
PID = (
    "PID|1||12345^^^HOSP&1.2.3.4.5&ISO^MR~999-88-7777^^^SSA^SS||Everyman^Adam^A^III^Dr^MD^L"
    "||19610615|M|||1 Main St^Apt 2^Springfield^IL^62701^USA^H||^PRN^PH^^1^217^5551234"
    "~^NET^Internet^adam@example.org|^WPN^PH^^1^217^5559999||M"
)
PV1 = (
    "PV1|1|I|4E^401^B^GOOD HEALTH||||1234^Attend^Ann^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO"
    "|||MED||||7|||||V100^^^HOSP&1.2.3.4.5&ISO^VN|||||||||||||||||||||||||20240301090000+0100"
)


def message(*segments: str) -> hl7v2.Message:
    return hl7v2.parse("\r".join(segments) + "\r")


def adt(event: str = "A01", *segments: str) -> hl7v2.Message:
    return message(MSH_ADT.format(event=event), *segments)


def oru(*segments: str) -> hl7v2.Message:
    return message(MSH_ORU, *segments)


def resources(result, resource_type: str) -> list[dict]:
    return [
        e["resource"]
        for e in result.bundle["entry"]
        if e["resource"]["resourceType"] == resource_type
    ]


def one(result, resource_type: str) -> dict:
    found = resources(result, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, got {len(found)}"
    return found[0]


def entry_of(result, resource: dict) -> dict:
    return next(e for e in result.bundle["entry"] if e["resource"] is resource)


@pytest.fixture
def convert_segments():
    """convert(adt("A01", PID, ...)) in one call: ``convert_segments("A01", PID, PV1)``."""

    def run(event: str, *segments: str):
        return convert(adt(event, *segments))

    return run


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from {field number: ER7 text} (the text is used as written, not escaped)."""
    return hl7v2.build_segment(name, {n: hl7v2.Raw(v) for n, v in fields.items()})
