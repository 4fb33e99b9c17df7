"""The business keys people search messages by, read from a parsed HL7 v2 message: patient
identifiers, names and birth date, order, accession and visit numbers, and the header's control
id and sender. Pure: the pipeline stores them, the console searches them."""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

from adapters.codecs import hl7v2

MAX_LENGTH = 200

IDENTIFIER = "identifier"
FAMILY = "family"
GIVEN = "given"
BIRTH_DATE = "birth_date"
CONTROL_ID = "control_id"
PLACER_ORDER = "placer_order"
FILLER_ORDER = "filler_order"
ACCESSION = "accession"
VISIT = "visit"
SENDING_APPLICATION = "sending_application"
SENDING_FACILITY = "sending_facility"

KINDS = (
    IDENTIFIER,
    FAMILY,
    GIVEN,
    BIRTH_DATE,
    CONTROL_ID,
    PLACER_ORDER,
    FILLER_ORDER,
    ACCESSION,
    VISIT,
    SENDING_APPLICATION,
    SENDING_FACILITY,
)
# Searched by their beginning too (a name as typed so far, a control id's stem).
PREFIX_KINDS = (FAMILY, GIVEN, CONTROL_ID)

# (kind, segment, field, component) read from every occurrence and repetition.
_FIELDS = (
    (FAMILY, "PID", 5, 1),
    (GIVEN, "PID", 5, 2),
    (PLACER_ORDER, "ORC", 2, 1),
    (PLACER_ORDER, "OBR", 2, 1),
    (FILLER_ORDER, "ORC", 3, 1),
    (FILLER_ORDER, "OBR", 3, 1),
    (ACCESSION, "OBR", 18, 1),
    (ACCESSION, "IPC", 1, 1),
    (ACCESSION, "SAC", 2, 1),
    (VISIT, "PV1", 19, 1),
)


class Key(NamedTuple):
    kind: str
    value: str
    authority: str
    normalised: str


def normalise(text: str) -> str:
    """Case and accents do not count: ``Müller`` and ``MULLER`` are the same key."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.casefold()[:MAX_LENGTH]


def extract(message: hl7v2.Message) -> list[Key]:
    """Every key ``message`` carries, once each."""
    found: dict[tuple[str, str, str], Key] = {}
    for key in _all_keys(message):
        if key.normalised:
            found.setdefault((key.kind, key.normalised, key.authority), key)
    return list(found.values())


def _all_keys(message: hl7v2.Message):
    yield _key(CONTROL_ID, message.control_id)
    yield _key(SENDING_APPLICATION, message.msh.get(3, 1))
    yield _key(SENDING_FACILITY, message.msh.get(4, 1))
    for pid in message.all("PID"):
        for cx in pid.repetitions(3):
            yield _key(IDENTIFIER, cx.component(1), cx.component(4, 1))
        yield _key(BIRTH_DATE, pid.get(7, 1)[:8])
    for kind, segment, field, component in _FIELDS:
        for seg in message.all(segment):
            for rep in seg.repetitions(field):
                yield _key(kind, rep.component(component, 1))


def _key(kind: str, value: str, authority: str = "") -> Key:
    value = value.strip()[:MAX_LENGTH]
    return Key(kind, value, authority.strip()[:MAX_LENGTH], normalise(value))
