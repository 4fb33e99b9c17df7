"""FHIR R4 canonical Bundle -> HL7 v2.5.1 (ADT^A01/A04/A08, ORU^R01) for MLLP destinations.

The reverse of the built-in maps in this package, datatype by datatype (the IG's maps read
backwards): Patient -> PID, Encounter -> PV1 (+ PV2), RelatedPerson -> NK1, DiagnosticReport ->
OBR, Observation -> OBX (+ NTE). Every text value is escaped for the message's encoding
characters, so a name holding ``| ^ ~ \\ &`` arrives intact; control characters and whitespace at
the end of a segment are sent as ``\\Xhh\\`` so that neither MLLP framing nor a reader's trimming
can change them.

What a v2 -> FHIR -> v2 round trip keeps is what the forward map keeps; the known losses are
listed where they happen (a PL's levels come back split on spaces, two-way code tables pick one
v2 code per FHIR code, CE/TX/TS come back as CWE/ST-or-TX/DT-or-TS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from adapters.base import AdapterError
from adapters.codecs.hl7v2 import DEFAULT_ENCODING, Encoding, Raw, build_segment
from adapters.mapping import codesystems as cs
from adapters.mapping.transforms import fhir_to_v2_datetime

__all__ = ["SUPPORTED", "ToV2Error", "to_v2"]

VERSION = "2.5.1"
# message type -> message structure (MSH-9.3)
SUPPORTED = {
    "ADT^A01": "ADT_A01",
    "ADT^A04": "ADT_A01",
    "ADT^A08": "ADT_A01",
    "ORU^R01": "ORU_R01",
}


class ToV2Error(AdapterError):
    """A Bundle that cannot become the requested v2 message (permanent: the input is wrong)."""

    permanent = True


# ------------------------------------------------------------------------- reverse code tables


def _reverse(table: Mapping[str, Any], preferred: Mapping[str, str] | None = None) -> dict:
    """FHIR code -> v2 code from a v2 -> FHIR table: the first v2 code wins unless preferred."""
    out: dict[str, str] = {}
    for v2_code, fhir_code in table.items():
        key = fhir_code[0] if isinstance(fhir_code, tuple) else fhir_code
        if key is not None:
            out.setdefault(key, v2_code)
    out.update(preferred or {})
    return out


SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
NAME_TYPE = _reverse(cs.NAME_USE, {"official": "L", "usual": "D", "old": "BAD", "temp": "TEMP"})
ADDRESS_TYPE = {"home": "H", "work": "B", "temp": "C", "billing": "BI", "old": "BR"}
TELECOM_USE = {"home": "PRN", "work": "WPN", "temp": "EMR", "mobile": "PRN", "old": "PRN"}
TELECOM_EQUIPMENT = {"phone": "PH", "fax": "FX", "pager": "BP", "email": "Internet", "sms": "CP"}
MARITAL = {v3: v2 for v2, (v3, _) in cs.MARITAL_STATUS_V3.items()} | {
    "L": "A",
    "T": "P",
    "A": "N",
    "UNK": "U",
}
PATIENT_CLASS = {v3: v2 for v2, (v3, _) in cs.PATIENT_CLASS.items()} | {
    "ACUTE": "I",
    "NONAC": "I",
    "OBSENC": "O",
    "SS": "O",
    "HH": "O",
    "VR": "O",
    "FLD": "O",
    "UNK": "U",
}
OBSERVATION_STATUS = {
    "final": "F",
    "preliminary": "P",
    "corrected": "C",
    "amended": "C",
    "cancelled": "X",
    "entered-in-error": "W",
    "registered": "I",
}
REPORT_STATUS = {
    "registered": "I",
    "partial": "A",
    "preliminary": "P",
    "final": "F",
    "corrected": "C",
    "amended": "C",
    "appended": "C",
    "cancelled": "X",
    "entered-in-error": "X",
}
RELATIONSHIP = {v3: v2 for v2, v3 in cs.RELATIONSHIP_V3.items()} | {"EXT": "EXF", "FAMMEMB": "OTH"}
PARTICIPANT_FIELDS = {"ATND": 7, "REF": 8, "CON": 9, "ADM": 17}
# A Location's physical type -> how many PL levels (point of care, room, bed) its name holds.
LOCATION_LEVELS = {"bd": 3, "ro": 2, "wa": 1}
# A Location level's physical type -> its PL component.
PL_COMPONENT = {"wa": 1, "ro": 2, "bd": 3, "si": 4, "bu": 7, "lvl": 8}
# MIME type -> ED type of data (table 0191) and subtype
ED_TYPES = {
    "application/pdf": ("AP", "PDF"),
    "application/rtf": ("AP", "RTF"),
    "application/msword": ("AP", "MSWORD"),
    "application/dicom": ("AP", "DICOM"),
    "application/xml": ("TEXT", "XML"),
    "text/html": ("TEXT", "HTML"),
    "text/plain": ("TEXT", "PLAIN"),
    "image/jpeg": ("IM", "JPEG"),
    "image/png": ("IM", "PNG"),
    "image/gif": ("IM", "GIF"),
    "image/tiff": ("IM", "TIFF"),
}
_SYSTEM_NAMES: dict[str, str] = {}
for _name, _uri in cs.CODING_SYSTEMS.items():
    _SYSTEM_NAMES.setdefault(_uri, _name)
_SYSTEM_NAMES.update({cs.LOINC: "LN", cs.SNOMED: "SCT", cs.UCUM: "UCUM"})
V3_SYSTEMS = {cs.V3_ACT_CODE, cs.V3_INTERPRETATION, cs.V3_MARITAL, cs.V3_ROLE_CODE}


def coding_system_name(uri: str | None) -> str:
    """A FHIR system URI as a v2 coding-system name (CWE-3): the inverse of the forward map."""
    if not uri:
        return ""
    if uri in _SYSTEM_NAMES:
        return _SYSTEM_NAMES[uri]
    if uri.startswith(cs.V2) and uri[len(cs.V2) :].isdigit():
        return "HL7" + uri[len(cs.V2) :]
    if uri.startswith(cs.LOCAL_CS_PREFIX):
        return unquote(uri[len(cs.LOCAL_CS_PREFIX) :])
    if uri.startswith("urn:oid:"):
        return uri[len("urn:oid:") :]
    return uri


# ------------------------------------------------------------------------------------ values


def _first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def _number(value: Any) -> str:
    """A JSON number as v2 NM text (no exponent, no float noise)."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    text = repr(value) if isinstance(value, float) else str(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def _dtm(value: Any) -> str:
    return fhir_to_v2_datetime(value) if isinstance(value, str) else ""


def hd(system: str | None, assigner: str = "") -> list[str]:
    """A system URI (+ assigner name) as HD components: namespace, universal id, id type."""
    if not system:
        return [assigner] if assigner else []
    if system.startswith(cs.LOCAL_ID_PREFIX):
        return [assigner or unquote(system[len(cs.LOCAL_ID_PREFIX) :])]
    for prefix, kind in (("urn:oid:", "ISO"), ("urn:uuid:", "UUID")):
        if system.startswith(prefix):
            return [assigner, system[len(prefix) :], kind]
    return [assigner, system, "URI"]


def _identifier(resource: Mapping[str, Any]) -> dict:
    """The first identifier the sender gave; the map's derived ``urn:uuid`` keys are not sent."""
    for ident in resource.get("identifier") or []:
        if ident.get("value") and ident.get("system") != cs.URI_SYSTEM:
            return ident
    return {}


def _type_code(identifier: Mapping[str, Any]) -> str:
    coding = _first((identifier.get("type") or {}).get("coding"))
    return (coding or {}).get("code", "")


def cx(identifier: Mapping[str, Any]) -> list[Any]:
    value = identifier.get("value")
    if not value:
        return []
    authority = hd(identifier.get("system"), (identifier.get("assigner") or {}).get("display", ""))
    period = identifier.get("period") or {}
    return [
        value,
        "",
        "",
        _trim(authority),
        _type_code(identifier),
        "",
        _dtm(period.get("start")),
        _dtm(period.get("end")),
    ]


def ei(identifier: Mapping[str, Any] | None) -> list[Any]:
    if not identifier or not identifier.get("value"):
        return []
    return [identifier["value"], *hd(identifier.get("system"))]


def cwe(concept: Mapping[str, Any] | None) -> list[Any]:
    """CodeableConcept -> CWE: primary (1-3), alternate (4-6), versions (7-8), original text (9)."""
    if not concept:
        return []
    codings = [c for c in concept.get("coding") or [] if c.get("code") or c.get("display")]
    text = concept.get("text", "")
    if not codings:
        return ["", text] if text else []
    out: list[Any] = [""] * 9
    for slot, coding in zip((0, 3), codings[:2], strict=False):
        out[slot] = coding.get("code", "")
        out[slot + 1] = coding.get("display", "")
        out[slot + 2] = coding_system_name(coding.get("system"))
        out[6 + slot // 3] = coding.get("version", "")
    if text:  # the forward map reads CWE-9 (original text) into text when there are codes
        out[8] = text
    return out


def code_of(concept: Mapping[str, Any] | None) -> str:
    """The first code of a CodeableConcept (for IS/ID fields)."""
    coding = _first((concept or {}).get("coding"))
    return (coding or {}).get("code", "")


def xpn(name: Mapping[str, Any]) -> list[Any]:
    given = name.get("given") or []
    suffix = name.get("suffix") or []
    family = name.get("family", "")
    if not (family or given) and name.get("text"):
        family = name["text"]
    return [
        family,
        given[0] if given else "",
        " ".join(given[1:]),
        suffix[0] if suffix else "",
        " ".join(name.get("prefix") or []),
        " ".join(suffix[1:]),
        NAME_TYPE.get(name.get("use", ""), ""),
    ]


def xad(address: Mapping[str, Any]) -> list[Any]:
    lines = address.get("line") or []
    kind = "M" if address.get("type") == "postal" else ADDRESS_TYPE.get(address.get("use", ""), "")
    return [
        lines[0] if lines else address.get("text", ""),
        " ".join(lines[1:]),
        address.get("city", ""),
        address.get("state", ""),
        address.get("postalCode", ""),
        address.get("country", ""),
        kind,
        "",
        address.get("district", ""),
    ]


def xtn(point: Mapping[str, Any]) -> list[Any]:
    value = point.get("value", "")
    system = point.get("system", "")
    use = point.get("use", "")
    if system == "email":  # NET unless a use is known: the forward map reads NET as no use
        return ["", TELECOM_USE.get(use, "NET"), "Internet", value]
    equipment = "CP" if use == "mobile" else TELECOM_EQUIPMENT.get(system, "")
    return [value, TELECOM_USE.get(use, ""), equipment]


def _trim(parts: list[Any]) -> list[Any]:
    while parts and not parts[-1]:
        parts.pop()
    return parts


def _reps(items: Iterable[list[Any]]) -> tuple[Any, ...]:
    return tuple(i for i in items if any(i))


# ------------------------------------------------------------------------------- the bundle


class _Bundle:
    """Resources by type and by reference (fullUrl or Type/id)."""

    def __init__(self, bundle: Any) -> None:
        if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
            raise ToV2Error("expected a FHIR Bundle (a JSON object with resourceType Bundle)")
        self.by_type: dict[str, list[dict]] = {}
        self.by_ref: dict[str, dict] = {}
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if not isinstance(resource, Mapping) or "resourceType" not in resource:
                continue
            rtype = resource["resourceType"]
            self.by_type.setdefault(rtype, []).append(resource)
            if entry.get("fullUrl"):
                self.by_ref[entry["fullUrl"]] = resource
            if resource.get("id"):
                self.by_ref[f"{rtype}/{resource['id']}"] = resource

    def all(self, rtype: str) -> list[dict]:
        return self.by_type.get(rtype, [])

    def resolve(self, reference: Mapping[str, Any] | None) -> dict | None:
        target = (reference or {}).get("reference")
        if not target:
            return None
        return self.by_ref.get(target) or self.by_ref.get("/".join(target.split("/")[-2:]))

    def refers(self, reference: Mapping[str, Any] | None, resource: Mapping[str, Any]) -> bool:
        return self.resolve(reference) is resource


def _current_patients(b: _Bundle) -> list[dict]:
    """Patients that are not the replaced side of a merge."""
    patients = b.all("Patient")
    current = [
        p for p in patients if not any(ln.get("type") == "replaced-by" for ln in p.get("link", []))
    ]
    return current or patients


# ------------------------------------------------------------------------------- segments


def _person(b: _Bundle, reference: Mapping[str, Any] | None) -> list[Any]:
    """Reference(Practitioner) -> id, family, given, middle, suffix, prefix, degree, HD, type:
    the parts XCN (1-7, 9, 13) and CNN (1-7, 9-11) share."""
    person = b.resolve(reference)
    if person is None:
        display = (reference or {}).get("display", "")
        return ["", display, "", "", "", "", "", [], ""]
    name = _first(person.get("name")) or {}
    ident = _identifier(person)
    given = name.get("given") or []
    suffix = name.get("suffix") or []
    return [
        ident.get("value", ""),
        name.get("family", ""),
        given[0] if given else "",
        " ".join(given[1:]),
        suffix[0] if suffix else "",
        " ".join(name.get("prefix") or []),
        " ".join(suffix[1:]),
        _trim(hd(ident.get("system"))) if ident.get("value") else [],
        _type_code(ident),
    ]


def xcn(b: _Bundle, reference: Mapping[str, Any] | None) -> list[Any]:
    """Reference(Practitioner) -> XCN (assigning authority in 9 as subcomponents, type in 13)."""
    p = _person(b, reference)
    return _trim([*p[:7], "", p[7], "", "", "", p[8]])


def cnn(b: _Bundle, reference: Mapping[str, Any] | None) -> list[Any]:
    """Reference(Practitioner) -> CNN, the person of an NDL (OBR-32): HD spread over 9-11."""
    p = _person(b, reference)
    return _trim([*p[:7], "", *(p[7] + ["", "", ""])[:3]])


def pl(b: _Bundle, reference: Mapping[str, Any] | None) -> list[Any]:
    """Reference(Location) -> PL. Each level is a Location of its physical type (site >
    building > floor > point of care > room > bed), ``partOf`` the level above; the levels
    above the referenced one are read up its ``partOf`` chain, those below (room, bed) from the
    Locations that are ``partOf`` it. An older single Location named by its levels joined with
    spaces is split back when the count matches its physical type (bed: 3 levels)."""
    place = b.resolve(reference)
    if place is None:
        display = (reference or {}).get("display", "")
        return [display] if display else []
    chain = _location_chain(b, place)
    components = [""] * 9
    if len(chain) == 1:
        parts = place.get("name", "").split(" ")
        expected = LOCATION_LEVELS.get(code_of(place.get("physicalType")), 1)
        levels = parts if len(parts) == expected else [place.get("name", "")]
        components[: len(levels)] = levels
    else:
        for loc in chain:
            n = PL_COMPONENT.get(code_of(loc.get("physicalType")))
            if n and not components[n - 1]:
                components[n - 1] = loc.get("name", "")
    components[8] = place.get("description", "")
    return _trim(components)


def _location_chain(b: _Bundle, place: dict) -> list[dict]:
    """The referenced Location, the ones it is partOf, and its room and bed below it."""
    chain = [place]
    while len(chain) < 6:
        parent = b.resolve(chain[-1].get("partOf"))
        if parent is None or parent in chain:
            break
        chain.append(parent)
    child = place
    for _ in range(2):
        child = next((c for c in b.all("Location") if b.refers(c.get("partOf"), child)), None)
        if child is None or child in chain:
            break
        chain.append(child)
    return chain


def pid_segment(b: _Bundle, patient: Mapping[str, Any], enc: Encoding, set_id: int = 1) -> str:
    ids, ssn, licence = [], "", []
    for ident in patient.get("identifier") or []:
        code = _type_code(ident)
        if ident.get("system") == cs.US_SSN and not ssn:
            ssn = ident.get("value", "")
        elif code == "DL" and not licence:
            licence = [ident.get("value", ""), (ident.get("assigner") or {}).get("display", "")]
        else:
            ids.append(cx(ident))
    telecom = patient.get("telecom") or []
    fields: dict[int, Any] = {
        1: str(set_id),
        3: _reps(ids),
        5: _reps(xpn(n) for n in patient.get("name") or []),
        7: _birth(patient),
        8: SEX.get(patient.get("gender", ""), ""),
        11: _reps(xad(a) for a in patient.get("address") or []),
        13: _reps(xtn(t) for t in telecom if t.get("use") != "work"),
        14: _reps(xtn(t) for t in telecom if t.get("use") == "work"),
        19: ssn,
        20: _trim(licence),
    }
    for ext in patient.get("extension") or []:
        url = ext.get("url", "")
        if url.endswith("patient-mothersMaidenName"):
            fields[6] = [ext.get("valueString", "")]
        elif url.endswith("patient-religion"):
            fields[17] = cwe(ext.get("valueCodeableConcept"))
        elif url.endswith("patient-birthPlace"):
            fields[23] = (ext.get("valueAddress") or {}).get("text", "")
    language = _first(patient.get("communication"))
    if language:
        fields[15] = cwe(language.get("language"))
    fields[16] = _marital(patient.get("maritalStatus"))
    if "multipleBirthInteger" in patient:
        fields[24] = "Y"
        fields[25] = str(patient["multipleBirthInteger"])
    elif "multipleBirthBoolean" in patient:
        fields[24] = "Y" if patient["multipleBirthBoolean"] else "N"
    if patient.get("deceasedDateTime"):
        fields[29] = _dtm(patient["deceasedDateTime"])
        fields[30] = "Y"
    elif "deceasedBoolean" in patient:
        fields[30] = "Y" if patient["deceasedBoolean"] else "N"
    return _segment("PID", fields, enc)


def _birth(patient: Mapping[str, Any]) -> str:
    for ext in (patient.get("_birthDate") or {}).get("extension") or []:
        if ext.get("url", "").endswith("patient-birthTime") and ext.get("valueDateTime"):
            return _dtm(ext["valueDateTime"])
    return _dtm(patient.get("birthDate"))


def _marital(concept: Mapping[str, Any] | None) -> list[Any]:
    if not concept:
        return []
    coding = _first(concept.get("coding")) or {}
    if coding.get("system") == cs.V3_MARITAL and coding.get("code") in MARITAL:
        return [MARITAL[coding["code"]], concept.get("text") or coding.get("display", "")]
    return cwe(concept)


def pv1_segment(b: _Bundle, encounter: Mapping[str, Any] | None, enc: Encoding) -> str:
    if encounter is None:  # ADT_A01 requires PV1: "N" says there is no visit
        return _segment("PV1", {1: "1", 2: "N"}, enc)
    klass = encounter.get("class") or {}
    code = klass.get("code", "")
    if klass.get("system") in (cs.V3_ACT_CODE, cs.V3_NULL_FLAVOR):
        code = PATIENT_CLASS.get(code, code)
    fields: dict[int, Any] = {1: "1", 2: code}
    locations: dict[str, list[dict]] = {}
    for loc in encounter.get("location") or []:
        locations.setdefault(loc.get("status", "active"), []).append(loc.get("location"))
    # The forward map reads (3, 11) as active, (6, 43) as completed and 42 as planned.
    for status, numbers in (("active", (3, 11)), ("completed", (6, 43)), ("planned", (42,))):
        for n, ref in zip(numbers, locations.get(status, []), strict=False):
            fields[n] = pl(b, ref)
    fields[4] = code_of(_first(encounter.get("type")))
    people: dict[int, list[list[Any]]] = {}
    for part in encounter.get("participant") or []:
        role = code_of(_first(part.get("type")))
        if role in PARTICIPANT_FIELDS:
            people.setdefault(PARTICIPANT_FIELDS[role], []).append(xcn(b, part.get("individual")))
    for n, persons in people.items():
        fields[n] = _reps(persons)
    fields[10] = code_of(encounter.get("serviceType"))
    stay = encounter.get("hospitalization") or {}
    pre = stay.get("preAdmissionIdentifier")
    if pre:
        fields[5] = cx(pre)
    fields[13] = code_of(stay.get("reAdmission"))
    fields[14] = code_of(stay.get("admitSource"))
    fields[15] = tuple(code_of(c) for c in stay.get("specialArrangement") or [])
    fields[36] = code_of(stay.get("dischargeDisposition"))
    destination = (stay.get("destination") or {}).get("display", "")
    if destination:
        fields[37] = [destination]
    fields[38] = code_of(_first(stay.get("dietPreference")))
    identifiers = encounter.get("identifier") or []
    visit = next((i for i in identifiers if _type_code(i) == "VN"), _first(identifiers))
    if visit:
        fields[19] = cx(visit)
        others = [i for i in identifiers if i is not visit]
        if others:
            fields[50] = cx(others[0])
    period = encounter.get("period") or {}
    fields[44] = _dtm(period.get("start"))
    fields[45] = _dtm(period.get("end"))
    return _segment("PV1", fields, enc)


def pv2_segment(b: _Bundle, encounter: Mapping[str, Any] | None, enc: Encoding) -> str | None:
    if not encounter:
        return None
    fields: dict[int, Any] = {3: cwe(_first(encounter.get("reasonCode")))}
    planned = [loc for loc in encounter.get("location") or [] if loc.get("status") == "planned"]
    if len(planned) > 1:  # the forward map reads PV1-42 and then PV2-1 as planned
        fields[1] = pl(b, planned[1].get("location"))
    length = encounter.get("length") or {}
    if length.get("code") == "d" and length.get("value") is not None:
        fields[11] = _number(length["value"])
    kind = _first(encounter.get("type")) or {}
    if kind.get("text") and not kind.get("coding"):
        fields[12] = kind["text"]
    fields[25] = cwe(encounter.get("priority"))
    segment = _segment("PV2", fields, enc)
    return segment if segment != "PV2" else None


def nk1_segment(person: Mapping[str, Any], set_id: int, enc: Encoding) -> str:
    relationship = _first(person.get("relationship")) or {}
    coding = _first(relationship.get("coding")) or {}
    rel = cwe(relationship)
    if coding.get("system") == cs.V3_ROLE_CODE and coding.get("code") in RELATIONSHIP:
        rel = [RELATIONSHIP[coding["code"]], coding.get("display", ""), "HL70063"]
    telecom = person.get("telecom") or []
    return _segment(
        "NK1",
        {
            1: str(set_id),
            2: _reps(xpn(n) for n in person.get("name") or []),
            3: _trim(rel),
            4: _reps(xad(a) for a in person.get("address") or []),
            5: _reps(xtn(t) for t in telecom if t.get("use") != "work"),
            6: _reps(xtn(t) for t in telecom if t.get("use") == "work"),
        },
        enc,
    )


def obr_segment(b: _Bundle, report: Mapping[str, Any], set_id: int, enc: Encoding) -> str:
    identifiers = report.get("identifier") or []
    placer = next((i for i in identifiers if _type_code(i) == "PLAC"), None)
    filler = next((i for i in identifiers if _type_code(i) == "FILL"), None)
    if placer is None and filler is None and identifiers:
        filler = identifiers[0]
    period = report.get("effectivePeriod") or {}
    section = _first(report.get("category"))
    interpreters = [cnn(b, r) for r in report.get("resultsInterpreter") or []]
    fields = {
        1: str(set_id),
        2: ei(placer),
        3: ei(filler),
        4: cwe(report.get("code")),
        7: _dtm(report.get("effectiveDateTime") or period.get("start")),
        8: _dtm(period.get("end")),
        22: _dtm(report.get("issued")),
        24: code_of(section),
        25: REPORT_STATUS.get(report.get("status", ""), ""),
        # OBR-32 is an NDL: the person is a CNN held in the subcomponents of component 1.
        32: _reps([person] for person in interpreters),
    }
    return _segment("OBR", fields, enc)


def obx_segments(
    b: _Bundle, obs: Mapping[str, Any], set_id: int, report_time: str, enc: Encoding
) -> list[str]:
    """One OBX (+ an NTE per note); an Observation with components and no value gives one OBX
    per component, numbered by the sub-id (OBX-4)."""
    rows: list[tuple[Mapping[str, Any], Mapping[str, Any], str]] = []
    components = obs.get("component") or []
    repeated = bool(components) and all(c.get("code") == obs.get("code") for c in components)
    if _has_value(obs) or not components or repeated:
        rows.append((obs, obs, ""))
    else:
        rows += [(obs, c, str(i)) for i, c in enumerate(components, start=1)]
    out = []
    for n, (parent, part, sub_id) in enumerate(rows):
        if repeated and not _has_value(obs):
            vtype, value, units = _repeated_value(b, obs, components)
        else:
            vtype, value, units = _value(b, parent, part)
        rng = _first(part.get("referenceRange"))
        if rng is None and repeated:  # a repeated value's range sits on each component
            rng = _first(components[0].get("referenceRange"))
        if not units and rng:  # a coded or text result can still carry units for its range
            units = _units(rng.get("low") or rng.get("high") or {})
        when = _dtm(parent.get("effectiveDateTime"))
        identity = _identifier(parent)
        fields = {
            1: str(set_id + n),
            2: vtype,
            3: cwe(part.get("code")),
            4: sub_id,
            5: value,
            6: units,
            7: _range(rng),
            8: tuple(code_of(i) for i in part.get("interpretation") or []),
            11: OBSERVATION_STATUS.get(parent.get("status", ""), ""),
            # the forward map copies OBR-7 into a missing OBX-14: send it only when it differs
            14: when if when != report_time else "",
            16: _reps(
                xcn(b, p)
                for p in parent.get("performer") or []
                if "Organization" not in _ref_type(b, p)
            ),
            17: cwe(parent.get("method")),
            21: ei(identity),
            23: _xon(b, parent.get("performer") or []),
        }
        out.append(_segment("OBX", fields, enc))
    for i, note in enumerate(obs.get("note") or [], start=1):
        if note.get("text"):
            out.append(_segment("NTE", {1: str(i), 3: note["text"]}, enc))
    return out


def _ref_type(b: _Bundle, reference: Mapping[str, Any]) -> str:
    resource = b.resolve(reference)
    if resource is not None:
        return resource["resourceType"]
    return (reference.get("reference") or "").split("/")[0]


def _xon(b: _Bundle, performers: list[Mapping[str, Any]]) -> list[Any]:
    for p in performers:
        org = b.resolve(p)
        if org is not None and org["resourceType"] == "Organization":
            ident = _identifier(org)
            authority = _trim(hd(ident.get("system"))) if ident.get("value") else ""
            row = [
                org.get("name", ""),
                "",
                "",
                "",
                "",
                authority,
                _type_code(ident) if ident else "",
            ]
            return _trim(row + ["", "", ident.get("value", "")])
    return []


def _repeated_value(
    b: _Bundle, obs: Mapping[str, Any], components: list[Mapping[str, Any]]
) -> tuple[str, Any, list[Any]]:
    """Components under the Observation's own code: the forward map's repeated OBX-5, sent
    back as one OBX with a repetition per component."""
    values = [_value(b, obs, c) for c in components]
    vtype, _, units = values[0]
    return vtype, tuple(value for _, value, _ in values), units


def _has_value(obs: Mapping[str, Any]) -> bool:
    return any(k.startswith("value") for k in obs) or bool(obs.get("derivedFrom"))


def _value(
    b: _Bundle, obs: Mapping[str, Any], part: Mapping[str, Any]
) -> tuple[str, Any, list[Any]]:
    """(OBX-2 value type, OBX-5 value, OBX-6 units) from value[x]."""
    if "valueQuantity" in part:
        q = part["valueQuantity"]
        if q.get("comparator"):
            return "SN", [q["comparator"], _number(q.get("value"))], _units(q)
        return "NM", _number(q.get("value")), _units(q)
    if "valueCodeableConcept" in part:
        return "CWE", cwe(part["valueCodeableConcept"]), []
    if "valueString" in part:
        lines = str(part["valueString"]).replace("\r\n", "\n").split("\n")
        # TX: the forward map joins repetitions with line breaks, so lines go back as repetitions
        if len(lines) > 1:
            return "TX", tuple(lines), []
        return "ST", lines[0], []
    if "valueDateTime" in part:
        text = part["valueDateTime"]
        return ("TS" if "T" in text else "DT"), _dtm(text), []
    if "valueTime" in part:
        return "TM", part["valueTime"].replace(":", ""), []
    if "valueInteger" in part:
        return "NM", _number(part["valueInteger"]), []
    if "valueBoolean" in part:
        return "ID", "Y" if part["valueBoolean"] else "N", []
    if "valueRange" in part:
        low, high = part["valueRange"].get("low") or {}, part["valueRange"].get("high") or {}
        return (
            "SN",
            ["", _number(low.get("value")), "-", _number(high.get("value"))],
            _units(low or high),
        )
    if "valueRatio" in part:
        num = part["valueRatio"].get("numerator") or {}
        den = part["valueRatio"].get("denominator") or {}
        return "SN", ["", _number(num.get("value")), ":", _number(den.get("value"))], _units(num)
    for ref in obs.get("derivedFrom") or []:
        doc = b.resolve(ref)
        if doc is not None and doc["resourceType"] == "DocumentReference":
            attachment = (_first(doc.get("content")) or {}).get("attachment") or {}
            kind, subtype = ED_TYPES.get(attachment.get("contentType", ""), ("AP", "OCTET-STREAM"))
            return "ED", ["", kind, subtype, "Base64", Raw(attachment.get("data", ""))], []
    return "", "", []


def _units(q: Mapping[str, Any]) -> list[Any]:
    code, unit, system = q.get("code", ""), q.get("unit", ""), q.get("system")
    if code and system:
        return [code, unit if unit != code else "", coding_system_name(system)]
    return [unit or code] if (unit or code) else []


def _range(rng: Mapping[str, Any] | None) -> str:
    if not rng:
        return ""
    if rng.get("text"):
        return rng["text"]
    low = _number((rng.get("low") or {}).get("value"))
    high = _number((rng.get("high") or {}).get("value"))
    if low and high:
        return f"{low}-{high}"
    return f">{low}" if low else f"<{high}" if high else ""


# ------------------------------------------------------------------------------- assembling

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _segment(name: str, fields: Mapping[int, Any], enc: Encoding) -> str:
    text = build_segment(name, {n: v for n, v in fields.items() if v}, enc)
    # Control characters would break MLLP framing or be read as separators, and readers trim
    # whitespace at a segment's end: send both as hex escapes (\\Xhh\\), which unescape restores.
    text = _CONTROL.sub(lambda m: f"{enc.escape}X{ord(m[0]):02X}{enc.escape}", text)
    stripped = text.rstrip(" \t")
    if stripped != text:
        tail = text[len(stripped) :]
        text = stripped + "".join(f"{enc.escape}X{ord(c):02X}{enc.escape}" for c in tail)
    return text


def _hd_field(value: str | list[str] | tuple[str, ...]) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def _timestamp(value: datetime | str | None) -> str:
    if isinstance(value, str):
        return value
    moment = value or datetime.now(UTC)
    text = moment.strftime("%Y%m%d%H%M%S")
    if moment.tzinfo is not None:
        text += moment.strftime("%z")
    return text


def to_v2(
    bundle: Mapping[str, Any],
    message_type: str = "ADT^A01",
    *,
    control_id: str,
    sending_application: str | list[str] = "HUB",
    sending_facility: str | list[str] = "",
    receiving_application: str | list[str] = "",
    receiving_facility: str | list[str] = "",
    timestamp: datetime | str | None = None,
    processing_id: str = "P",
    encoding: Encoding = DEFAULT_ENCODING,
) -> str:
    """Build an HL7 v2.5.1 message (ER7, segments ended by ``\\r``) from a canonical Bundle.

    ``message_type``: ADT^A01, ADT^A04, ADT^A08 or ORU^R01. Applications and facilities are a
    namespace id (text) or HD components (a list). ``timestamp`` (MSH-7, EVN-2) defaults to now in
    UTC. Raises `ToV2Error` when the Bundle lacks what the message needs (a Patient; for ORU a
    DiagnosticReport or Observation).
    """
    structure = SUPPORTED.get(message_type)
    if structure is None:
        raise ToV2Error(f"cannot build {message_type!r}; supported: {', '.join(sorted(SUPPORTED))}")
    if not control_id:
        raise ToV2Error("control_id (MSH-10) is required")
    b = _Bundle(bundle)
    patients = _current_patients(b)
    if not patients:
        raise ToV2Error(f"{message_type} needs a Patient; the Bundle has none")
    code, event = message_type.split("^")
    sent = _timestamp(timestamp)
    header = {
        3: _hd_field(sending_application),
        4: _hd_field(sending_facility),
        5: _hd_field(receiving_application),
        6: _hd_field(receiving_facility),
        7: sent,
        9: [code, event, structure],
        10: control_id,
        11: processing_id,
        12: VERSION,
    }
    if code == "ADT":
        body = _adt_body(b, patients[0], event, sent, encoding)
    else:
        body = _oru_body(b, patients, encoding)
    if not all(segment.isascii() for segment in body):
        header[18] = "UNICODE UTF-8"
    # Built with fields from 3 on; MSH-1 (the separator) and MSH-2 are written literally.
    built = _segment("MSH", header, encoding)
    msh = (
        "MSH"
        + encoding.field
        + encoding.msh2
        + encoding.field
        + built[3 + 3 * len(encoding.field) :]
    )
    return "\r".join([msh, *body]) + "\r"


def _adt_body(
    b: _Bundle, patient: Mapping[str, Any], event: str, sent: str, enc: Encoding
) -> list[str]:
    encounters = [e for e in b.all("Encounter") if b.refers(e.get("subject"), patient)]
    encounter = _first(encounters) or _first(b.all("Encounter"))
    segments = [_segment("EVN", {1: event, 2: sent}, enc), pid_segment(b, patient, enc)]
    related = [r for r in b.all("RelatedPerson") if b.refers(r.get("patient"), patient)]
    segments += [nk1_segment(r, i, enc) for i, r in enumerate(related, start=1)]
    segments.append(pv1_segment(b, encounter, enc))
    pv2 = pv2_segment(b, encounter, enc)
    if pv2:
        segments.append(pv2)
    return segments


def _oru_body(b: _Bundle, patients: list[dict], enc: Encoding) -> list[str]:
    reports = b.all("DiagnosticReport")
    observations = b.all("Observation")
    if not reports and not observations:
        raise ToV2Error("ORU^R01 needs a DiagnosticReport or an Observation; the Bundle has none")
    segments: list[str] = []
    for set_id, patient in enumerate(patients, start=1):
        mine = [r for r in reports if b.refers(r.get("subject"), patient)]
        if len(patients) == 1:
            mine = reports
        if not mine and len(patients) > 1:
            continue
        segments.append(pid_segment(b, patient, enc, set_id))
        encounter = next(
            (e for e in b.all("Encounter") if b.refers(e.get("subject"), patient)), None
        )
        if encounter is not None:
            segments.append(pv1_segment(b, encounter, enc))
        segments += _orders(b, mine, observations if len(patients) == 1 else [], enc)
    return segments


def _orders(b: _Bundle, reports: list[dict], loose: list[dict], enc: Encoding) -> list[str]:
    """OBR + OBX groups. Observations no report lists go under the last OBR; with no report at
    all, one OBR is made from the first Observation's code, time and status."""
    claimed: set[int] = set()
    groups: list[tuple[Mapping[str, Any], list[dict]]] = []
    for report in reports:
        results = [b.resolve(r) for r in report.get("result") or []]
        results = [r for r in results if r is not None and r["resourceType"] == "Observation"]
        claimed.update(id(r) for r in results)
        groups.append((report, results))
    rest = [o for o in loose if id(o) not in claimed]
    if rest:
        if groups:
            groups[-1][1].extend(rest)
        else:
            first = rest[0]
            synthetic = {
                "code": first.get("code"),
                "status": first.get("status"),
                "effectiveDateTime": first.get("effectiveDateTime"),
            }
            groups.append((synthetic, rest))
    segments: list[str] = []
    for set_id, (report, results) in enumerate(groups, start=1):
        segments.append(obr_segment(b, report, set_id, enc))
        report_time = _dtm(
            report.get("effectiveDateTime") or (report.get("effectivePeriod") or {}).get("start")
        )
        n = 1
        for obs in results:
            rows = obx_segments(b, obs, n, report_time, enc)
            n += sum(1 for r in rows if r.startswith("OBX"))
            segments += rows
    return segments
