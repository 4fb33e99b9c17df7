"""The business keys people search messages by: patient identifiers, names and birth date, order,
accession and visit numbers, and the header's control id and sender. Read from a parsed HL7 v2
message, or from a canonical FHIR Bundle (a message that came as FHIR or custom JSON). Pure: the
pipeline stores them, the console searches them."""

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
# The keys that name the patient: masked wherever a viewer reads free text about the message.
PHI_KINDS = (IDENTIFIER, FAMILY, GIVEN, BIRTH_DATE, VISIT)
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
    if text.isascii():  # nothing to decompose (most keys): the same answer, five times faster
        return text.strip().casefold()[:MAX_LENGTH]
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
    msh = message.msh
    yield _key(CONTROL_ID, message.control_id)
    yield _key(SENDING_APPLICATION, _first(msh, 3))
    yield _key(SENDING_FACILITY, _first(msh, 4))
    for pid in message.all("PID"):
        for cx in pid.repetitions(3):
            yield _key(IDENTIFIER, cx.component(1), cx.component(4, 1))
        yield _key(BIRTH_DATE, _first(pid, 7)[:8])
    for kind, segment, field, component in _FIELDS:
        for seg in message.all(segment):
            for value in _components(seg, field, component):
                yield _key(kind, value)


def _components(seg: hl7v2.Segment, field: int, component: int):
    """Component ``component`` (its first subcomponent) of each repetition of ``field``,
    unescaped; what ``seg.repetitions(field)[i].component(component, 1)`` gives, without the
    Field objects (the empty ones left out: they make no key)."""
    raw = seg[field]
    if not raw:
        return
    enc = seg.enc
    for rep in raw.split(enc.repetition):
        parts = rep.split(enc.component)
        if component <= len(parts):
            value = parts[component - 1].split(enc.subcomponent, 1)[0]
            if value:
                yield hl7v2.unescape(value, enc)


def _first(seg: hl7v2.Segment, field: int) -> str:
    """The first component of ``field``'s first repetition (``seg.get(field, 1)``)."""
    enc = seg.enc
    rep = seg[field].split(enc.repetition, 1)[0]
    return hl7v2.unescape(rep.split(enc.component, 1)[0].split(enc.subcomponent, 1)[0], enc)


# A FHIR identifier's type (v2 table 0203) that names the key it is; others are left out.
_ORDER_TYPES = {"PLAC": PLACER_ORDER, "FILL": FILLER_ORDER}
_ENCOUNTER_TYPES = {"VN": VISIT}
_REPORT_TYPES = {**_ORDER_TYPES, "ACSN": ACCESSION}


def from_bundle(bundle: dict, control_id: str = "") -> list[Key]:
    """Every key a canonical FHIR Bundle carries (a message that came as FHIR or custom JSON),
    once each; ``control_id`` is the message's own, when it has one."""
    found: dict[tuple[str, str, str], Key] = {}
    keys = [_key(CONTROL_ID, control_id), *_bundle_keys(bundle)]
    for key in keys:
        if key.normalised:
            found.setdefault((key.kind, key.normalised, key.authority), key)
    return list(found.values())


def _bundle_keys(bundle: dict):
    for resource in _resources(bundle):
        kind = resource.get("resourceType")
        if kind == "Patient":
            yield from _patient_keys(resource)
        elif kind == "ServiceRequest":
            yield from _typed_identifiers(resource, _ORDER_TYPES, untyped=PLACER_ORDER)
        elif kind == "Encounter":
            yield from _typed_identifiers(resource, _ENCOUNTER_TYPES, untyped=VISIT)
        elif kind == "DiagnosticReport":
            yield from _typed_identifiers(resource, _REPORT_TYPES)
        elif kind == "Specimen":
            accession = _dict(resource.get("accessionIdentifier"))
            yield _key(ACCESSION, _text(accession.get("value")))


def _resources(bundle: dict):
    if bundle.get("resourceType") != "Bundle":
        yield bundle
        return
    for entry in _list(bundle.get("entry")):
        resource = _dict(_dict(entry).get("resource"))
        if resource:
            yield resource


def _patient_keys(patient: dict):
    for identifier in map(_dict, _list(patient.get("identifier"))):
        yield _key(IDENTIFIER, _text(identifier.get("value")), _authority(identifier))
    for name in map(_dict, _list(patient.get("name"))):
        yield _key(FAMILY, _text(name.get("family")))
        for given in _list(name.get("given")):
            yield _key(GIVEN, _text(given))
    # Stored as v2 writes it (YYYYMMDD), so one search finds both.
    yield _key(BIRTH_DATE, _text(patient.get("birthDate")).replace("-", "")[:8])


def _typed_identifiers(resource: dict, kinds: dict[str, str], untyped: str = ""):
    for identifier in map(_dict, _list(resource.get("identifier"))):
        codes = [
            _text(_dict(coding).get("code"))
            for coding in _list(_dict(identifier.get("type")).get("coding"))
        ]
        kind = next((kinds[c] for c in codes if c in kinds), untyped if not codes else "")
        if kind:
            yield _key(kind, _text(identifier.get("value")))


def _authority(identifier: dict) -> str:
    """Who assigned it: the assigner's name, else the system (``urn:id:X`` as X)."""
    assigner = _text(_dict(identifier.get("assigner")).get("display"))
    return assigner or _text(identifier.get("system")).removeprefix("urn:id:")


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _key(kind: str, value: str, authority: str = "") -> Key:
    value = value.strip()[:MAX_LENGTH]
    return Key(kind, value, authority.strip()[:MAX_LENGTH], normalise(value))
