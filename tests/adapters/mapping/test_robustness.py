"""Random field mutations never crash the maps: a message converts to a valid Bundle or fails
with the codec's HL7Error or a MappingError naming where, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.codecs import hl7v2
from adapters.mapping import MappingError, convert
from adapters.mapping.validation import validate_full
from bench.bench_mapping import ADT_A01, ORU_R01_20

from .conftest import MSH_ORU, PID

SIU = "\r".join(
    [
        "MSH|^~\\&|SCH|FAC|EHR|HUB|20240301101500+0100||SIU^S12|S-1|P|2.5.1",
        "SCH|1^EHR|2^SCH|||||CHK^Checkup|||^^^202403051000+0100^202403051100+0100||||||||||||||Booked",
        PID,
        "RGS|1",
        "AIS|1|A|99213^Office visit^C4|202403051000+0100|||60|min",
        "AIP|1||1210^Gastro^Greta|GI^Gastro^L",
        "AIL|1||CLINIC^R1^^FAC",
    ]
)
VXU = "\r".join(
    [
        "MSH|^~\\&|IIS|FAC|EHR|HUB|20240301101500+0100||VXU^V04|V-1|P|2.5.1",
        PID,
        "ORC|RE||IZ-1^NDA",
        "RXA|0|1|20120814||140^Influenza^CVX|0.5|mL^mL^UCUM||00^New^NIP001|||||||W1356FE|20121214|SKB^GSK^MVX|||CP|A",
        "RXR|C28161^Intramuscular^NCIT|RA^Right Arm^HL70163",
        "OBX|1|CE|64994-7^Eligibility^LN|1|V03^VFC^HL70064||||||F",
    ]
)
RDE = "\r".join(
    [
        "MSH|^~\\&|RX|FAC|EHR|HUB|20240301101500+0100||RDE^O11|R-1|P|2.5.1",
        PID,
        "ORC|NW|RX-1^EHR|||||||20240301100000+0100|||1234^Doc^Dora",
        "RXE||00047040230^Ampicillin^NDC|250|500|mg^mg^UCUM||^Take with water||N|30|caps|2",
        "TQ1|1||TID|||||20240301|20240310",
        "RXR|PO^Oral^HL70162",
    ]
)
MDM = "\r".join(
    [
        "MSH|^~\\&|DOC|FAC|EHR|HUB|20240301101500+0100||MDM^T02|M-1|P|2.5.1",
        PID,
        "TXA|1|DS^Discharge^HL70270|TX|20240301120000+0100|1780^Johnson^Val|||||||DOC-1^EHR|||||AU||AV",
        "OBX|1|TX|11490-0^Note^LN||Line one~Line two||||||F",
        "OBX|2|ED|11490-0^PDF^LN||EHR^AP^PDF^Base64^JVBERi0xLjQ=||||||F",
    ]
)
DFT = "\r".join(
    [
        "MSH|^~\\&|FIN|FAC|EHR|HUB|20240301101500+0100||DFT^P03|D-1|P|2.5.1",
        PID + "||ACC-1^^^HOSP^AN",
        "FT1|1|T-1||20191122|20191122|CG|71045^Xray chest^C4|||2|100&USD|||||||||9941^Smith^Adam",
        "IN1|1|PPO^Blue|BCBS^^^BCBS|Blue Cross",
        "GT1|1||Radiant^Lucy||||||||MTH^Mother",
    ]
)
ORU = "\r".join(
    [
        MSH_ORU,
        PID,
        "ORC|RE|PL-1^EHR|FL-1^LAB",
        "OBR|1|PL-1^EHR|FL-1^LAB|24331-1^Lipid^LN|||20240301083000-0500|||||||||||||||20240301100000-0500|||F",
        "OBX|1|NM|2093-3^Chol^LN||212|mg/dL^^UCUM|<200|H|||F",
        "OBX|2|SN|5196-1^Titer^LN||^1^:^128||||||F",
        "NTE|1||note",
        "SPM|1|SP-1^EHR||119297000^Blood^SCT",
    ]
)
MESSAGES = [ADT_A01, ORU_R01_20, ORU, SIU, VXU, RDE, MDM, DFT]

TEXT = st.text(
    alphabet=st.sampled_from(list('^~&\\|"0123456789 .+-:ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz/\u00e9')),
    max_size=24,
)


def _mutate(text: str, data) -> str:
    lines = text.split("\r")
    index = data.draw(st.integers(1, len(lines) - 1), label="segment")  # MSH stays readable
    fields = lines[index].split("|")
    n = data.draw(st.integers(1, max(len(fields), 2) + 3), label="field")
    while len(fields) <= n:
        fields.append("")
    fields[n] = data.draw(TEXT, label="value")
    lines[index] = "|".join(fields)
    return "\r".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_message_converts_or_fails_clearly(data):
    original = data.draw(st.sampled_from(MESSAGES), label="message")
    text = original
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        text = _mutate(text, data)
    try:
        message = hl7v2.parse(text)
    except hl7v2.HL7Error:
        return
    try:
        result = convert(message)
    except MappingError as exc:
        assert "internal map error" not in str(exc), str(exc)
        assert exc.target
        return
    validate_full(result.bundle)  # what the fast validator passed, fhir.resources accepts
