"""Every segment field a built-in map writes into the Bundle has a row on the Mapping page.

Each corpus message and hand-made sample is converted with its segments' field reads recorded.
Every field read that no row declares is then set, alone, to a few values (text components, a
number, a time, a time range, and each value the corpus and samples give that field) and the
message converted again: when the Bundle changes, the field reaches the FHIR output without a
row, and the table has fallen behind the code. A field that only counts together with another
(DG1-2 names a system only when DG1-3 gives none) is found when a message shows it that way;
test_declared_maps.py proves the other direction, every row against what conversion writes.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from contextlib import contextmanager

import pytest

from adapters.codecs import hl7v2
from adapters.mapping import convert, declared
from adapters.mapping.result import MappingError
from tests.adapters.test_declared_maps import corpus_messages

# Another helper declares the maps of these segments (issue #11); their fields wait for them.
SEGMENTS_DECLARED_ELSEWHERE = {"PID", "NK1", "DB1", "OBX"}
# MSH-9 chooses the message map: every row of the table depends on it.
CHOOSES_THE_MAP = {"MSH-9"}
# Fields a row's transform text names (the units of an amount, an id's system): the page shows
# them in that row. Each value is the row that names its key.
DESCRIBED_IN = {
    "MSH-3": "MSH-10",
    "MSH-4": "MSH-10",
    "RXA-7": "RXA-6",
    "RXC-4": "RXC-3",
    "RXC-6": "RXC-5",
    "RXC-8": "RXC-5",
    "RXC-9": "RXC-5",
    "RXD-5": "RXD-4",
    "RXD-19": "RXD-18",
    "RXE-4": "RXE-3",
    "RXE-5": "RXE-3",
    "RXE-11": "RXE-10",
    "RXE-24": "RXE-23",
    "RXO-4": "RXO-2",
    "RXO-12": "RXO-11",
}
PROBES = ("ZQ1^ZQ2^ZQ3^ZQ4^ZQ5^ZQ6^ZQ7", "2", "20240102103000", "^^^20240102103000^20240102113000")


def declared_fields() -> set[str]:
    return {row.v2.partition(".")[0] for m in declared.all_maps() for row in m.rows}


def exempt(field: str) -> bool:
    segment = field.partition("-")[0]
    return segment in SEGMENTS_DECLARED_ELSEWHERE or field in CHOOSES_THE_MAP | DESCRIBED_IN.keys()


@contextmanager
def recorded_reads():
    reads: set[tuple[str, int]] = set()
    read = hl7v2.Segment.__getitem__

    def recording(seg, n):
        reads.add((seg.fields[0], n))
        return read(seg, n)

    hl7v2.Segment.__getitem__ = recording
    try:
        yield reads
    finally:
        hl7v2.Segment.__getitem__ = read


def bundle_text(message: hl7v2.Message) -> str | None:
    try:
        return json.dumps(convert(message, check=False).bundle, sort_keys=True, default=str)
    except MappingError:  # a value the map refuses says nothing about what it writes
        return None


def with_field(message: hl7v2.Message, segment: str, n: int, value: str) -> hl7v2.Message:
    """A copy of ``message`` with field ``n`` of every ``segment`` set to ``value``."""
    changed = hl7v2.parse(message.encode())
    for seg in changed.all(segment):
        seg.fields.extend([""] * (n + 1 - len(seg.fields)))
        seg.fields[n] = value
    return changed


def reaches_bundle(message, segment: str, n: int, values) -> bool:
    bundles = {bundle_text(with_field(message, segment, n, v)) for v in ("", *values)}
    return len(bundles - {None}) > 1


def corpus_values(messages) -> dict[tuple[str, int], set[str]]:
    values = defaultdict(set)
    for _, message in messages:
        for seg in message.segments:
            for n, text in enumerate(seg.fields[1:], start=1):
                if text:
                    values[(seg.name, n)].add(text)
    return values


def test_every_field_that_reaches_the_bundle_has_a_declared_row(corpus):
    messages = list(corpus_messages(corpus))
    values = corpus_values(messages)
    known = declared_fields()
    undeclared = defaultdict(list)  # (segment, n) -> the messages whose map reads it
    for path, message in messages:
        with recorded_reads() as reads:
            bundle_text(message)
        for segment, n in reads:
            if n > 0 and f"{segment}-{n}" not in known and not exempt(f"{segment}-{n}"):
                undeclared[(segment, n)].append((path, message))
    assert len(messages) >= 55
    unlisted = []
    for (segment, n), readers in sorted(undeclared.items()):
        probes = (*PROBES, *values[(segment, n)])
        shown = next((p for p, m in readers if reaches_bundle(m, segment, n, probes)), None)
        if shown is not None:
            unlisted.append(f"{segment}-{n} (changes the Bundle of {shown.name})")
    assert not unlisted, "fields the maps write with no declared row:\n" + "\n".join(unlisted)


def test_the_probe_sees_a_field_that_reaches_the_bundle_and_not_one_that_does_not(corpus):
    path, message = next(
        (p, m) for p, m in corpus_messages(corpus) if p.name == "fhirconv_siu_s12_v28.hl7"
    )
    assert reaches_bundle(message, "SCH", 25, ("Cancelled", "Booked"))  # Appointment.status
    assert reaches_bundle(message, "AIL", 12, ("Cancelled",))  # participant.status
    assert not reaches_bundle(message, "SCH", 24, PROBES)  # no map reads SCH-24


@pytest.mark.parametrize("field, row", sorted(DESCRIBED_IN.items()))
def test_a_field_left_to_another_row_is_named_in_its_transform(field, row):
    segment, _, number = field.partition("-")
    rows = [r for m in declared.all_maps() for r in m.rows if r.v2 == row]
    assert rows, f"{field}: no row {row}"
    named = re.compile(rf"\b{segment}-(\d+/)*{number}\b")
    assert any(named.search(r.transform) for r in rows), f"{row} does not name {field}"
    assert field not in declared_fields(), f"{field} has its own row now: drop it here"
