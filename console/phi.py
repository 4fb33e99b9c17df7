"""PHI masking for people who may see that a message exists but not whom it is about.

Pure functions, no Django: ``mask_hl7`` (raw HL7 v2 text), ``mask_fhir`` (canonical FHIR JSON),
``mask_text`` (error details and other prose that may quote a value).

Masking keeps the shape: segment names, separators, repetitions and components stay, so a
viewer can still see that PID-5 had a family and a given name; only the values become ``***``.
Segments are masked by allowlist: a segment this module does not know (a Z-segment, a new one)
is masked whole, because nobody has checked which of its fields are safe.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

MASK: Final = "***"

# Segments about a person: every field is masked except the coded, non-identifying ones listed.
_PERSON_KEEP: Final[dict[str, frozenset[int]]] = {
    # set id, sex, race, language, religion, marital status, ethnic group, multiple birth, death
    "PID": frozenset({1, 8, 10, 15, 16, 17, 22, 24, 30}),
    # set id, relationship, contact role
    "NK1": frozenset({1, 3, 7}),
    # set id, guarantor type, relationship
    "GT1": frozenset({1, 10, 11}),
    # set id, plan, company id and name, plan type, insured's relationship
    "IN1": frozenset({1, 2, 3, 4, 15, 17}),
    "IN2": frozenset({1}),
    "MRG": frozenset(),
    "PD1": frozenset({1, 2, 5, 6, 7, 8, 9, 10, 11, 12}),
    "PV2": frozenset({2, 6, 7, 8, 9}),
}

# Segments about the message, the order or the visit: every field is readable except the listed
# free-text and identifying ones.
_RECORD_MASK: Final[dict[str, frozenset[int]]] = {
    "MSH": frozenset(),
    "EVN": frozenset(),
    "MSA": frozenset({3}),  # text message may quote the sender's data
    "ERR": frozenset({7, 8}),  # diagnostic information, user message
    "OBR": frozenset({13}),  # relevant clinical information (free text)
    "ORC": frozenset(),
    "OBX": frozenset(),  # OBX-5 is decided by its value type, below
    "NTE": frozenset({3}),  # the comment
    "PV1": frozenset({19, 50}),  # visit number, alternate visit id
    "TXA": frozenset(),
    "SPM": frozenset({14}),  # specimen description
    "DG1": frozenset({4}),  # diagnosis description
    "AL1": frozenset({5}),  # reaction (free text)
    "PR1": frozenset({4}),  # procedure description
    "SCH": frozenset(),
    "TQ1": frozenset({10, 11}),  # condition text, text instruction
    "AIS": frozenset(),
    "AIG": frozenset(),
    "AIL": frozenset(),
    "AIP": frozenset(),
    "RGS": frozenset(),
    "RXA": frozenset(),
    "RXE": frozenset(),
    "RXO": frozenset(),
    "RXR": frozenset(),
    "FT1": frozenset(),
    "FHS": frozenset(),
    "BHS": frozenset(),
    "FTS": frozenset({2}),
    "BTS": frozenset({2}),
}

# OBX-5 stays readable only for structured value types; text, documents and anything unknown
# (TX, FT, ST, ED, RP...) are masked.
_STRUCTURED_OBX: Final = frozenset(
    {"NM", "SN", "NR", "CE", "CWE", "CNE", "CF", "CQ", "ID", "IS", "DT", "TM", "TS", "DTM"}
)


_SEGMENT_NAME: Final = re.compile(r"[A-Z][A-Z0-9]{2}")


def mask_hl7(text: str) -> str:
    """``text`` with every PHI value replaced by ``***``, keeping segments and separators."""
    if not text:
        return text
    lines = re.split(r"(\r\n|\r|\n)", text)
    field_sep, others = _encoding(text)
    out = []
    for part in lines:
        if part in ("\r\n", "\r", "\n") or not part:
            out.append(part)
        else:
            out.append(_mask_segment(part, field_sep, others))
    return "".join(out)


def _encoding(text: str) -> tuple[str, str]:
    """The field separator and the component/repetition/subcomponent characters."""
    start = text.find("MSH")
    if start < 0 or len(text) < start + 4:
        return "|", "^~&"
    field_sep = text[start + 3]
    msh2 = text[start + 4 :].split(field_sep, 1)[0]
    # MSH-2 is component, repetition, escape, subcomponent; escape sequences need no splitting.
    chars = (msh2[:2] + msh2[3:4]) or "^~&"
    return field_sep, "".join(c for c in chars if c not in "\r\n")


def _mask_segment(segment: str, field_sep: str, others: str) -> str:
    fields = segment.split(field_sep)
    name = fields[0]
    if not _SEGMENT_NAME.fullmatch(name):
        return MASK  # not a segment (junk before MSH, a broken line): nothing in it is known safe
    if name in ("MSH", "FHS", "BHS"):
        return segment  # header: routing codes only; MSH-1/2 are the separators themselves
    if name in _PERSON_KEEP:
        keep = _PERSON_KEEP[name]
        masked = [
            f if i == 0 or i in keep else _mask_value(f, others) for i, f in enumerate(fields)
        ]
    elif name in _RECORD_MASK:
        hide = set(_RECORD_MASK[name])
        if name == "OBX" and (len(fields) < 3 or fields[2].strip().upper() not in _STRUCTURED_OBX):
            hide.add(5)
        masked = [_mask_value(f, others) if i in hide else f for i, f in enumerate(fields)]
    else:
        masked = [fields[0]] + [_mask_value(f, others) for f in fields[1:]]
    return field_sep.join(masked)


def _mask_value(value: str, separators: str) -> str:
    """Replace every non-empty atom between separators by MASK."""
    if not value:
        return value
    pattern = "[" + re.escape(separators) + "]" if separators else None
    if pattern is None:
        return MASK
    pieces = re.split(f"({pattern})", value)
    return "".join(p if re.fullmatch(pattern, p) or not p else MASK for p in pieces)


# --- FHIR

# Resources about a person other than a clinician: these elements are masked wherever they sit
# in the resource (Patient.contact.name included).
_PERSON_RESOURCES: Final = frozenset({"Patient", "RelatedPerson", "Person"})
_PERSON_ELEMENTS: Final = frozenset(
    {
        "name",
        "birthDate",
        "_birthDate",
        "deceasedDateTime",
        "address",
        "telecom",
        "photo",
        "contact",
        "link",
    }
)
# Elements masked in every resource.
_ANY_ELEMENTS: Final = frozenset(
    {
        "valueString",
        "valueMarkdown",
        "valueAttachment",
        "valueAddress",
        "valueHumanName",
        "valueContactPoint",
        "valueIdentifier",
        "note",
        "text",  # narrative (Resource.text) and free text of CodeableConcepts alike
        "comment",
        "subscriberId",
        "content",  # DocumentReference.content: the document itself
        "presentedForm",  # DiagnosticReport: the report itself
        "conclusion",
    }
)
# Query parameters of Bundle.entry.request that carry identifier values.
_QUERY_VALUE: Final = re.compile(r"(identifier=)([^&]*)")


def mask_fhir(data: Any) -> Any:
    """A copy of FHIR JSON (a Bundle or a resource) with PHI values replaced by ``***``."""
    return _walk(data, person=False, people=_person_references(data))


def mask_json(data: Any) -> Any:
    """A sender's own JSON with every value masked: no schema says which of its keys are safe,
    so only the keys and the shape stay readable."""
    return _blank(data)


def _person_references(data: Any) -> frozenset[str]:
    """fullUrls of the Bundle's person resources: a reference to one may display their name."""
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        return frozenset()
    return frozenset(
        entry["fullUrl"]
        for entry in data.get("entry") or []
        if isinstance(entry, dict)
        and "fullUrl" in entry
        and isinstance(entry.get("resource"), dict)
        and entry["resource"].get("resourceType") in _PERSON_RESOURCES
    )


def _is_person_reference(node: dict, people: frozenset[str]) -> bool:
    target = node.get("reference")
    if not isinstance(target, str):
        return False
    return target in people or target.split("/", 1)[0] in _PERSON_RESOURCES


def _walk(node: Any, *, person: bool, people: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_walk(item, person=person, people=people) for item in node]
    if not isinstance(node, dict):
        return node
    if "resourceType" in node:
        person = node.get("resourceType") in _PERSON_RESOURCES
    names_a_person = _is_person_reference(node, people)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ANY_ELEMENTS or (person and key in _PERSON_ELEMENTS):
            out[key] = _blank(value)
        elif key == "identifier":
            out[key] = _mask_identifiers(value, people)
        elif key in ("url", "ifNoneExist") and isinstance(value, str) and "identifier=" in value:
            out[key] = _QUERY_VALUE.sub(lambda m: m.group(1) + _mask_query_value(m.group(2)), value)
        elif key == "display" and names_a_person:
            out[key] = _blank(value)
        else:
            out[key] = _walk(value, person=person, people=people)
    return out


def _mask_identifiers(value: Any, people: frozenset[str]) -> Any:
    items = value if isinstance(value, list) else [value]
    masked = []
    for item in items:
        if isinstance(item, dict):
            item = {
                k: (_blank(v) if k == "value" else _walk(v, person=False, people=people))
                for k, v in item.items()
            }
        masked.append(item)
    return masked if isinstance(value, list) else masked[0]


def _mask_query_value(value: str) -> str:
    system, bar, _ = value.rpartition("|")
    return f"{system}{bar}{MASK}" if bar else MASK


def _blank(value: Any) -> Any:
    """Same shape, every leaf masked (keys stay so the structure is still readable)."""
    if isinstance(value, dict):
        return {k: _blank(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    return MASK


# --- prose

# Python reprs of str and bytes ('x', "x", b'x'): how our errors quote the values they met.
_QUOTED: Final = re.compile(r"""(?<!\w)b?(['"])(?:(?!\1)[^\\\n]|\\.)*\1(?!\w)""")
# A fragment of raw HL7 quoted without quotes: a segment name followed by a field separator.
_HL7_FRAGMENT: Final = re.compile(r"\b[A-Z][A-Z0-9]{2}\|\S*")


def mask_text(text: str) -> str:
    """Error details and other prose with the values they quote masked: the reason stays."""
    if not text:
        return text
    text = _QUOTED.sub(lambda m: m.group(1) + MASK + m.group(1), text)
    return _HL7_FRAGMENT.sub(lambda m: m.group(0)[:4] + MASK, text)


# --- structured details

# Keys of a conversion issue or a destination's OperationOutcome issue that may quote a value.
_ISSUE_VALUE_KEYS: Final = frozenset({"value"})
_ISSUE_PROSE_KEYS: Final = frozenset({"reason", "diagnostics", "details", "text"})


def mask_routing(decisions: list[dict]) -> list[dict]:
    """A message's routing decisions as a viewer sees them: the rule (the analyst's, no PHI)
    stays readable; an engine error after it may quote a value, so that part is masked."""
    return [{**d, "reason": _mask_after_rule(str(d.get("reason", "")))} for d in decisions]


def _mask_after_rule(reason: str) -> str:
    rule, found, problem = reason.partition("` failed: ")
    return f"{rule}{found}{mask_text(problem)}" if found else reason


def mask_issue(issue: dict) -> dict:
    """A conversion or destination issue as a viewer sees it: the value it quotes masked, its
    prose masked where it quotes one; where it happened (segment, field, target, expression)
    stays readable."""
    masked = {}
    for key, value in issue.items():
        if key in _ISSUE_VALUE_KEYS and value not in (None, ""):
            masked[key] = MASK
        elif key in _ISSUE_PROSE_KEYS and isinstance(value, str):
            masked[key] = mask_text(value)
        elif isinstance(value, dict):
            masked[key] = mask_issue(value)
        else:
            masked[key] = value
    return masked


def lane_label(ordering_key: str) -> str:
    """An ordered lane named without the value that keys it (a patient identifier, often): the
    same key always gives the same label, so a viewer can still see which deliveries share one."""
    if not ordering_key:
        return ""
    return "lane-" + hashlib.sha256(ordering_key.encode()).hexdigest()[:10]
