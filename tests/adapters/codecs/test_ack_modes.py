"""Which ACK code a message is owed, per ACK mode and MSH-15 (no sockets, no database)."""

from __future__ import annotations

import pytest

from adapters.codecs.hl7v2 import parse
from adapters.codecs.hl7v2_ack import Header, ack_code, build_ack


def header(msh15: str = "", msh16: str = "") -> Header:
    return Header.of(
        parse(f"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5.1|||{msh15}|{msh16}\rPID|1\r")
    )


# (MSH-15, verdict) -> code in enhanced mode; "" means no ACK is sent.
ENHANCED = [
    ("AL", "accept", "CA"),
    ("AL", "error", "CE"),
    ("AL", "reject", "CR"),
    ("NE", "accept", ""),
    ("NE", "error", ""),
    ("NE", "reject", ""),
    ("ER", "accept", ""),
    ("ER", "error", "CE"),
    ("ER", "reject", "CR"),
    ("SU", "accept", "CA"),
    ("SU", "error", ""),
    ("SU", "reject", ""),
    ("su", "accept", "CA"),  # read case-blind
    ("XX", "accept", "CA"),  # unknown: answered, as AL
    ("XX", "reject", "CR"),
]


@pytest.mark.parametrize(("msh15", "verdict", "code"), ENHANCED)
def test_enhanced_mode_follows_msh15(msh15, verdict, code) -> None:
    assert ack_code(verdict, header(msh15, "AL"), "enhanced") == code


@pytest.mark.parametrize("msh15", ["AL", "NE", "ER", "SU", ""])
@pytest.mark.parametrize(("verdict", "code"), [("accept", "AA"), ("error", "AE"), ("reject", "AR")])
def test_original_mode_always_answers_and_ignores_msh15(msh15, verdict, code) -> None:
    assert ack_code(verdict, header(msh15, "NE"), "original") == code


@pytest.mark.parametrize(("verdict", "code"), [("accept", "AA"), ("error", "AE"), ("reject", "AR")])
def test_enhanced_mode_without_msh15_and_msh16_uses_the_original_rules(verdict, code) -> None:
    assert ack_code(verdict, header(), "enhanced") == code


def test_enhanced_mode_with_only_msh16_answers_as_if_msh15_were_al() -> None:
    assert ack_code("accept", header("", "NE"), "enhanced") == "CA"
    assert ack_code("reject", header("", "AL"), "enhanced") == "CR"


@pytest.mark.parametrize("msh15", ["NE", "SU", "ER", "AL"])
def test_a_message_not_committed_is_always_answered(msh15) -> None:
    assert ack_code("error", header(msh15, "AL"), "enhanced", committed=False) == "CE"
    assert ack_code("error", header(msh15, "AL"), "original", committed=False) == "AE"


def test_header_reads_msh15_and_msh16_from_a_parsed_and_a_salvaged_message() -> None:
    assert (header("ER", "SU").accept_ack_type, header("ER", "SU").application_ack_type) == (
        "ER",
        "SU",
    )
    broken = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5.1|||NE^x|AL\r1X|oops\r"
    salvaged = Header.salvage(broken)
    assert (salvaged.accept_ack_type, salvaged.application_ack_type) == ("NE", "AL")


def test_commit_codes_build_an_ack_with_an_err_segment_for_ce_and_cr() -> None:
    for code in ("CE", "CR"):
        nak = parse(build_ack(header("AL", "AL"), code, control_id="N", text="why"))
        assert nak.get("MSA-1") == code and nak.get("MSA-3") == "why"
        assert nak.get("ERR-8") == "why"
    ok = parse(build_ack(header("AL", "AL"), "CA", control_id="Y"))
    assert ok.get("MSA-1") == "CA" and ok.first("ERR") is None
