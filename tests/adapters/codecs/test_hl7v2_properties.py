"""Random damage to real messages: the codec answers with a Message or an HL7Error, never with
another exception, and never hangs (every example runs under a deadline)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.codecs.hl7v2 import HL7Error, Message, Path, decode_bytes, parse
from adapters.codecs.hl7v2_ack import Header, build_ack
from adapters.codecs.hl7v2_batch import split_batch
from adapters.codecs.hl7v2_structure import describe, validate_structure
from tests.adapters.codecs._corpus import CORPUS, corpus_files

BUILT_IN = [
    b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01^ADT_A01|1|P|2.5\rEVN|A01\rPID|1||1^^^H^MR~2||DOE^J\r",
    b"MSH^~|\\&^S^F^R^F^2012^^ADT~A24^C^T^2.4\rPID^1^^1~~~F&&1|2\r",
    b"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A|B|||||ORU^R01|1|P|2.3\rOBX|1|NM|X||1\rBTS|1\rFTS|1\r",
    b"MSH|^~\\&#|A|B|||||ORU^R01|1|P|2.7|||||||||\rOBX|1|FT|X||a\\.br\\b\\X0D\\#\rZZ1|x\r",
]
SEEDS = BUILT_IN + [(CORPUS / f).read_bytes() for f in corpus_files()]
SPECIAL = list(b"|^~\\&#\r\n \x00\x0b\x1c\xef\xbb\xbf\xc3\xa9\xffMSHZ0")

FAST = settings(
    max_examples=200,
    deadline=timedelta(milliseconds=500),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    byte = st.one_of(st.sampled_from(SPECIAL), st.integers(0, 255))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "duplicate", "cut"]))
        if op == "replace" and at < len(data):
            data[at] = draw(byte)
        elif op == "insert":
            data[at:at] = bytes(draw(st.lists(byte, min_size=1, max_size=4)))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
        elif op == "cut":
            del data[at:]
    return bytes(data)


@st.composite
def damaged_fields(draw: st.DrawFn) -> str:
    """A seed message with whole fields replaced by separator-heavy text."""
    text = decode_bytes(draw(st.sampled_from(SEEDS)))[0]
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    value = st.text(alphabet=list("|^~\\&#XFSTRE.br0Dz \r\nMSH"), max_size=12)
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        fields = lines[i].split("|")
        j = draw(st.integers(0, len(fields) - 1))
        fields[j] = draw(value)
        lines[i] = "|".join(fields)
    return "\r".join(lines)


PATHS = st.builds(
    lambda seg, occ, field, rep, comp, sub: Path(seg, field, occ, rep, comp, sub),
    st.sampled_from(["MSH", "PID", "OBX", "EVN", "PV1", "ZZ1", "NTE"]),
    st.integers(1, 3),
    st.integers(1, 30),
    st.integers(0, 3),
    st.none() | st.integers(1, 12),
    st.none() | st.integers(1, 4),
)


def _exercise(message: Message, paths: list[Path]) -> None:
    """Everything a mapper calls must work on whatever parse accepted."""
    assert message.msh.name == "MSH"
    for value in (
        message.message_type,
        message.control_id,
        message.version,
        message.sending_application,
        message.sending_facility,
        message.charset,
        message.encode(),
    ):
        assert isinstance(value, str)
    for seg in message.segments:
        for n in range(len(seg.fields) + 1):
            seg.get(n)
            for rep in seg.repetitions(n):
                rep.component(1)
                rep.component(2, 1)
                rep.value  # noqa: B018 - the property is evaluated for its failure, if any
    for path in paths:
        assert isinstance(message.get(path), str)
        assert all(isinstance(v, str) for v in message.get_all(path))
    header = Header.of(message)
    assert build_ack(header, "AA", control_id="x").startswith("MSH")


@FAST
@given(damaged_bytes(), st.lists(PATHS, max_size=5))
def test_damaged_bytes_give_a_message_or_an_hl7error(data: bytes, paths: list[Path]) -> None:
    try:
        message = parse(data)
    except HL7Error as err:
        assert err.bare_reason
        return
    _exercise(message, paths)


@FAST
@given(damaged_fields(), st.lists(PATHS, max_size=5))
def test_damaged_fields_give_a_message_or_an_hl7error(text: str, paths: list[Path]) -> None:
    try:
        message = parse(text)
    except HL7Error:
        return
    _exercise(message, paths)


@FAST
@given(damaged_bytes())
def test_damaged_batches_split_or_fail_with_hl7error(data: bytes) -> None:
    try:
        parts = split_batch(data)
    except HL7Error:
        return
    for part in parts:
        try:
            message = parse(part)
        except HL7Error:
            continue
        assert message.msh.name == "MSH"


@FAST
@given(damaged_bytes())
def test_a_nak_can_always_be_built(data: bytes) -> None:
    """The listener answers even what parse refuses: salvaging the header never fails."""
    header = Header.salvage(decode_bytes(data)[0])
    for code in ("AE", "AR"):
        ack = build_ack(header, code, control_id="1", text="bad", error_location=("PID", 1, 3))
        assert ack.startswith("MSH")


@settings(
    max_examples=60,
    deadline=timedelta(seconds=3),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.one_of(damaged_bytes(), damaged_fields().map(str.encode)))
def test_structure_tools_accept_whatever_parse_accepts(data: bytes) -> None:
    try:
        message = parse(data)
    except HL7Error:
        return
    tree = describe(message)
    for node in tree.walk():
        if node.kind != "segment" and node.kind != "message" and not node.children:
            assert message.get(node.path) == node.value
    validate_structure(message)
