"""Structure knowledge from hl7apy's tables: the parse tree and validation, off the hot path."""

from __future__ import annotations

import pytest

from adapters.codecs.hl7v2 import parse
from adapters.codecs.hl7v2_structure import (
    Issue,
    Node,
    describe,
    field_spec,
    message_structure,
    segment_spec,
    table_version,
    validate_structure,
)

ADT = (
    "MSH|^~\\&|REG|HOSP|HUB|HUB|20240102030405||ADT^A04|CTRL-1|P|{v}\r"
    "EVN|A04|20240102030405\r"
    "PID|1||111^^^HOSP&1.2.3&ISO^MR~222^^^STATE^SS||DOE^JOHN^Q||19800101|M\r"
    "PV1|1|O|CLINIC^1\r"
    "OBX|1|NM|8302-2^Height^LN||180|cm|||||F\r"
    "OBX|2|CE|X^Coded||Y^Yes^HL70136||||||F\r"
    "ZPV|1|site^specific\r"
)


def _leaves(tree: Node) -> list[Node]:
    return [n for n in tree.walk() if n.kind not in ("message", "segment") and not n.children]


def test_table_version() -> None:
    assert table_version("2.5.1") == "2.5.1"
    assert table_version("2.3.z") == "2.3"
    assert table_version("2.9") == "2.8.2"
    assert table_version("") == "2.5"
    assert table_version("garbage") == "2.5"
    assert table_version("2.0") == "2.1"


def test_describe_names_and_types_fields_for_the_version() -> None:
    tree = describe(parse(ADT.format(v="2.5")))
    assert tree.kind == "message" and tree.name == "ADT^A04" and tree.datatype == "ADT_A01"
    pid5 = tree.find("PID-5")
    assert pid5 is not None
    assert (pid5.label, pid5.datatype, pid5.value) == ("Patient Name", "XPN", "DOE^JOHN^Q")
    family = tree.find("PID-5.1")
    assert family is not None
    assert (family.label, family.datatype, family.name, family.value) == (
        "Family Name",
        "FN",
        "XPN.1",
        "DOE",
    )
    sex = tree.find("PID-8")
    assert sex is not None and sex.table == "HL70001"
    pid = tree.find("PID")
    assert pid is not None and pid.label == "Patient Identification"


def test_describe_repetitions_and_subcomponents() -> None:
    tree = describe(parse(ADT.format(v="2.5")))
    pid3 = tree.find("PID-3")
    assert pid3 is not None
    assert [c.path for c in pid3.children] == ["PID-3(1)", "PID-3(2)"]
    authority = tree.find("PID-3(1).4")
    assert authority is not None and authority.datatype == "HD"
    assert [(s.path, s.label, s.value) for s in authority.children] == [
        ("PID-3(1).4.1", "Namespace ID", "HOSP"),
        ("PID-3(1).4.2", "Universal ID", "1.2.3"),
        ("PID-3(1).4.3", "Universal ID Type", "ISO"),
    ]


def test_obx5_takes_its_datatype_from_obx2() -> None:
    tree = describe(parse(ADT.format(v="2.5")))
    nm = tree.find("OBX-5")
    ce = tree.find("OBX(2)-5")
    assert nm is not None and ce is not None
    assert nm.datatype == "NM" and nm.value == "180" and not nm.children
    assert ce.datatype == "CE"
    assert [(c.label, c.value) for c in ce.children] == [
        ("Identifier", "Y"),
        ("Text", "Yes"),
        ("Name of Coding System", "HL70136"),
    ]


def test_z_segments_and_segments_of_other_versions_are_described() -> None:
    text = ADT.format(v="2.5.1") + "PRT|1|AD||RO^Role\r"
    tree = describe(parse(text))
    zpv = tree.find("ZPV")
    assert zpv is not None and zpv.label == "Site-defined segment"
    assert tree.find("ZPV-2.2").value == "specific"  # type: ignore[union-attr]
    prt = tree.find("PRT")
    assert prt is not None
    assert any("described from v2.7" in note for note in prt.notes)
    assert tree.find("PRT-4").label  # type: ignore[union-attr]


def test_withdrawn_fields_are_described_from_an_older_version() -> None:
    tree = describe(parse(ADT.format(v="2.8")))
    evn1 = tree.find("EVN-1")
    assert evn1 is not None
    assert evn1.label == "Event Type Code"
    assert any("withdrawn" in note for note in evn1.notes)
    assert tree.find("EVN-2").label == "Recorded Date Time"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "version", ["2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"]
)
def test_tree_paths_read_the_same_values_as_message_get(version: str) -> None:
    message = parse(ADT.format(v=version))
    tree = describe(message)
    leaves = _leaves(tree)
    assert len(leaves) > 20
    for node in leaves:
        assert message.get(node.path) == node.value, node.path
    assert tree.find("PID-5").label == "Patient Name"  # type: ignore[union-attr]


def test_include_empty_and_to_dict() -> None:
    message = parse(ADT.format(v="2.5"))
    assert describe(message, include_empty=True).find("PID-2") is not None
    assert describe(message).find("PID-2") is None
    data = describe(message).to_dict()
    assert data["kind"] == "message"
    pid = next(s for s in data["children"] if s["name"] == "PID")
    assert pid["children"][0]["path"] == "PID-1"


def test_message_structure_from_msh9_or_the_event_table() -> None:
    assert message_structure(parse(ADT.format(v="2.5"))) == "ADT_A01"
    assert message_structure(parse(ADT.format(v="2.3").replace("ADT^A04", "ADT^A28"))) == "ADT_A01"
    assert message_structure(parse(ADT.format(v="2.5").replace("ADT^A04", "ADT^A28"))) == "ADT_A05"
    assert message_structure(parse(ADT.format(v="2.5").replace("ADT^A04", "ORU^R01"))) == "ORU_R01"
    assert message_structure(parse(ADT.format(v="2.5").replace("ADT^A04", "XYZ^Q99"))) is None


def test_specs() -> None:
    spec = segment_spec("PID", "2.5")
    assert spec is not None and spec.count == 39 and spec.field(5).datatype == "XPN"  # type: ignore[union-attr]
    assert segment_spec("ZZZ", "2.5") is None
    assert field_spec("EVN", 1, "2.8")[1] == "2.7"


def test_a_clean_message_has_no_errors() -> None:
    issues = validate_structure(parse(ADT.format(v="2.5")))
    assert [i for i in issues if i.severity == "error"] == []
    assert [i.code for i in issues] == ["z_segment"]


def _codes(text: str) -> dict[str, list[Issue]]:
    found: dict[str, list[Issue]] = {}
    for issue in validate_structure(parse(text)):
        found.setdefault(issue.code, []).append(issue)
    return found


def test_required_fields_and_segments() -> None:
    text = ADT.format(v="2.5").replace("DOE^JOHN^Q", "").replace("EVN|A04|20240102030405\r", "")
    found = _codes(text)
    assert [i.path for i in found["required_field"]] == ["PID-5"]
    assert found["required_field"][0].message == "Patient Name is required"
    missing = found["required_segment"][0]
    assert missing.message == "required segment EVN of ADT_A01 is missing before PID"
    assert (missing.path, missing.segment_index, missing.severity) == ("PID", 2, "error")


def test_segment_order() -> None:
    text = ADT.format(v="2.5").replace("PV1|1|O|CLINIC^1\r", "") + "PV1|1|O\r"
    found = _codes(text)
    assert [(i.path, i.message) for i in found["segment_order"]] == [
        ("PV1", "PV1 is out of place for ADT_A01")
    ]
    assert "required_segment" in found  # PV1 is required where it should be


def test_primitive_formats() -> None:
    text = ADT.format(v="2.5").replace("19800101", "Jan 1, 1980").replace("||180|", "||1,80|")
    found = _codes(text)
    paths = {i.path: i.message for i in found["data_type"]}
    assert "is not a date/time" in paths["PID-7.1"]
    assert paths["OBX-5"] == "'1,80' is not a number (NM)"


def test_repetition_and_extra_fields_and_version() -> None:
    text = (
        ADT.format(v="2.3.z")
        .replace("|M\r", "|M~F\r")
        .replace("CLINIC^1\r", "CLINIC^1" + "|" * 60 + "X\r")
    )
    found = _codes(text)
    assert found["repetition"][0].path == "PID-8"
    assert found["extra_field"][0].path.startswith("PV1-")
    assert found["version"][0].severity == "info"


def test_message_type_and_truncation() -> None:
    text = ADT.format(v="2.7").replace("ADT^A04", "ADT^Üi²").replace("^~\\&|", "^~\\&#|", 1)
    text = text.replace("DOE^JOHN^Q", "DOE^JO#")
    found = _codes(text)
    assert found["message_type"][0].path == "MSH-9.2"
    assert found["structure"][0].severity == "warning"
    assert found["truncated"][0].path == "PID-5"
