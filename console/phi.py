"""PHI masking for people who may see that a message exists but not whom it is about.

Pure functions, no Django. For every surface a viewer can see (pages, API, websocket events,
test bench), two entry points:

- ``mask_free_text(value, phi)``: any text that came from outside or quotes what did (error
  details, attempt errors, response summaries, OperationOutcome and conversion issues), masked
  against the message's own PHI values (``phi``, gathered once per message with
  ``message_phi``; ``UNKNOWN_PHI`` once its body is pruned masks them whole) and against
  PHI-looking patterns, quoted or not;
- ``mask_body(raw, content_type)``: a message body as received; a body that does not parse is
  masked whole.

Underneath: ``mask_hl7`` (raw HL7 v2 text), ``mask_fhir`` (canonical FHIR JSON), ``mask_json``
(a sender's own JSON).

Masking keeps the shape: segment names, separators, repetitions and components stay, so a
viewer can still see that PID-5 had a family and a given name; only the values become ``***``.
Segments are masked by allowlist: a segment this module does not know (a Z-segment, a new one)
is masked whole, because nobody has checked which of its fields are safe.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from adapters.codecs import bounded_json
from adapters.codecs.custom_json import MEDIA_TYPE as CUSTOM_JSON

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


# --- one message's own PHI values

# Shorter values are codes (sex, name type, state) more often than anyone's data; masking them
# would blank half of every sentence. Digit-only values need more: "400" is a status code.
_MIN_LETTERS: Final = 3
_MIN_DIGITS: Final = 4
_MIN_WORD: Final = 4  # a word taken from a longer value ("MARY" from "MARY ANN")
# Where a person's data sits in a FHIR person resource (codes, systems and uses do not count).
_PERSON_LEAVES: Final = frozenset(
    {"family", "given", "text", "line", "city", "district", "postalCode", "value"}
)
_PERSON_DATES: Final = frozenset({"birthDate", "deceasedDateTime"})
_IDENTIFIER_LEAVES: Final = frozenset({"value"})
# The visit number and alternate visit id of PV1 identify a stay as an MRN identifies a person.
_RECORD_IDENTIFIERS: Final = {"PV1": frozenset({19, 50})}
_HL7_DATE: Final = re.compile(r"((?:19|20)\d{2})(\d{2})(\d{2})")
# Values are compared token by token (runs of letters, runs of digits, case folded), so a value
# is found whatever the case and punctuation around or inside it ("Smith, Jane" for "SMITH^JANE",
# "MRN 41207" for "MRN-41207"), never inside a longer word ("ANN" in "ANNOUNCE"), and no pattern
# is compiled per message.
_TOKEN: Final = re.compile(r"[^\W\d_]+|\d+")
_NOT_DIGIT: Final = re.compile(r"\D")


@dataclass(frozen=True)
class MessagePhi:
    """The PHI values one message carries (names, identifiers, birth date, address, phone), as
    token sequences indexed by their first token. Build it once per message and response with
    ``message_phi`` (or ``phi_of_values``), then mask every text about that message with it.
    ``unknown``: the values can no longer be read (the body was pruned), so no outside text can
    be checked and each is masked whole."""

    values: frozenset[tuple[str, ...]] = frozenset()
    by_first_token: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    unknown: bool = False

    def __contains__(self, value: str) -> bool:
        return _tokens(value) in self.values


NO_PHI: Final = MessagePhi()
UNKNOWN_PHI: Final = MessagePhi(unknown=True)


def message_phi(
    raw: str = "",
    canonical: Any = None,
    content_type: str = "",
    *,
    pruned: bool = False,
    known: Iterable[str] = (),
) -> MessagePhi:
    """The PHI values of one message, from its body as received (``raw``: the HL7 v2 person
    segments, FHIR person resources and identifiers, or every value of a sender's own JSON), from
    its canonical FHIR, and ``known`` besides (its stored business keys: names, identifiers,
    birth date); ``UNKNOWN_PHI`` once its body is ``pruned``. Pure and cheap enough to call once
    per message per response; not per field."""
    if pruned:
        return UNKNOWN_PHI
    values = _fhir_values(canonical) + _raw_values(raw, content_type) + list(known)
    return phi_of_values(values)


def phi_of_values(values: Iterable[str]) -> MessagePhi:
    """A ``MessagePhi`` from values already at hand (a message's extracted keys, a test bench's
    sample): each value, its words and its other spellings (a birth date as ``1980-01-01``)."""
    spellings = dict.fromkeys(_spellings(dict.fromkeys(values)))  # once each, in order
    kept = frozenset(t for t in map(_tokens, spellings) if _distinctive(t))
    if not kept:
        return NO_PHI
    index: dict[str, list[tuple[str, ...]]] = {}
    for tokens in sorted(kept, key=len, reverse=True):  # the longest match first
        index.setdefault(tokens[0], []).append(tokens)
    return MessagePhi(kept, {first: tuple(seqs) for first, seqs in index.items()})


def _tokens(value: str) -> tuple[str, ...]:
    return tuple(t.casefold() for t in _TOKEN.findall(value))


def _spellings(values: Iterable[str]) -> Iterator[str]:
    for value in values:
        yield value
        words = value.split()
        if len(words) > 1:
            yield from (w for w in words if len(w) >= _MIN_WORD)
        if date := _HL7_DATE.match(value.strip()):
            yield "".join(date.groups())
            yield "-".join(date.groups())
        digits = _NOT_DIGIT.sub("", value)
        if len(digits) >= 7:  # a phone or an identifier echoed without its dashes
            yield digits


def _distinctive(tokens: tuple[str, ...]) -> bool:
    if len(tokens) != 1:
        return sum(map(len, tokens)) >= _MIN_DIGITS
    token = tokens[0]
    return len(token) >= (_MIN_DIGITS if token.isdigit() else _MIN_LETTERS)


def _mask_values(text: str, phi: MessagePhi) -> str:
    """``text`` with every run of tokens that spells one of ``phi``'s values masked."""
    found = list(_TOKEN.finditer(text))
    folded = [m.group().casefold() for m in found]
    out, done, i = [], 0, 0
    while i < len(found):
        length = _match_at(folded, i, phi.by_first_token.get(folded[i], ()))
        if length:
            out += [text[done : found[i].start()], MASK]
            done = found[i + length - 1].end()
            i += length
        else:
            i += 1
    return "".join(out) + text[done:]


def _match_at(folded: list[str], i: int, candidates: tuple[tuple[str, ...], ...]) -> int:
    for tokens in candidates:
        if tuple(folded[i : i + len(tokens)]) == tokens:
            return len(tokens)
    return 0


def _raw_values(raw: str, content_type: str) -> list[str]:
    if not raw:
        return []
    if "json" not in content_type:
        return list(_hl7_values(raw))
    try:
        data = bounded_json.loads(raw)
    except (ValueError, RecursionError):
        return _json_string_values(raw)
    if content_type == CUSTOM_JSON:
        found: list[str] = []
        _collect_strings(data, found)
        return found
    return _fhir_values(data)


# A JSON string, the last one possibly cut, and whether a colon makes it a key.
_JSON_STRING: Final = re.compile(r'"((?:[^"\\\n]|\\.)*)(?:("\s*:)|"?)')


def _json_string_values(text: str) -> list[str]:
    """The string values of JSON that does not parse (cut short, broken): its error may still
    quote them unquoted, so every one counts."""
    return [m.group(1) for m in _JSON_STRING.finditer(text) if not m.group(2)]


def _hl7_values(text: str) -> Iterator[str]:
    """The atoms ``mask_hl7`` hides in segments about a person, and visit numbers."""
    field_sep, others = _encoding(text)
    atoms = re.compile("[" + re.escape(others) + "]") if others else None
    for segment in re.split(r"\r\n|\r|\n", text):
        fields = segment.split(field_sep)
        name = fields[0]
        if name in _PERSON_KEEP:
            wanted = [f for i, f in enumerate(fields[1:], 1) if i not in _PERSON_KEEP[name]]
        elif name in _RECORD_IDENTIFIERS:
            wanted = [f for i, f in enumerate(fields) if i in _RECORD_IDENTIFIERS[name]]
        else:
            continue
        for value in wanted:
            yield from (atoms.split(value) if atoms else [value])


def _fhir_values(data: Any) -> list[str]:
    found: list[str] = []
    _collect_fhir(data, False, found)
    return found


def _collect_fhir(node: Any, person: bool, found: list[str]) -> None:
    """Into ``found``: identifier values anywhere, a person resource's name, address, telecom
    and dates (one pass, no generators: a 30-resource Bundle is walked per response)."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _collect_fhir(item, person, found)
        return
    if not isinstance(node, dict):
        return
    if "resourceType" in node:
        person = node.get("resourceType") in _PERSON_RESOURCES
    for key, value in node.items():
        if key == "identifier":
            _collect_under(value, _IDENTIFIER_LEAVES, found)
        elif key == "subscriberId" or (person and key in _PERSON_DATES):
            _collect_strings(value, found)
        elif person and key in _PERSON_ELEMENTS:
            _collect_under(value, _PERSON_LEAVES, found)
        elif isinstance(value, dict | list):
            _collect_fhir(value, person, found)


def _collect_under(node: Any, keys: frozenset[str], found: list[str]) -> None:
    """Into ``found``: every string held under one of ``keys``, however deep."""
    if isinstance(node, list):
        for item in node:
            _collect_under(item, keys, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in keys:
                _collect_strings(value, found)
            else:
                _collect_under(value, keys, found)


def _collect_strings(node: Any, found: list[str]) -> None:
    if isinstance(node, str):
        found.append(node)
    elif isinstance(node, list):
        for item in node:
            _collect_strings(item, found)
    elif isinstance(node, dict):
        for value in node.values():
            _collect_strings(value, found)


# --- free text

# Python reprs of str and bytes ('x', "x", b'x'): how our errors quote the values they met.
_QUOTED: Final = re.compile(r"""(?<!\w)b?(['"])(?:(?!\1)[^\\\n]|\\.)*\1(?!\w)""")
# A fragment of raw HL7 quoted without quotes: a segment name followed by a field separator.
_HL7_FRAGMENT: Final = re.compile(r"\b[A-Z][A-Z0-9]{2}\|\S*")
# What looks like PHI whoever it is about: e-mail, SSN, phone, dates, record numbers.
_DIGIT: Final = re.compile(r"\d")
_EMAIL: Final = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHI_NUMBERS: Final = re.compile(
    r"""
    (?<![\d-])\d{3}-\d{2}-\d{4}(?!\d)                            # SSN
    | (?:\(\d{3}\)\s?|(?<!\d)\d{3}[-.\s])\d{3}[-.]\d{4}(?!\d)     # phone with area code
    | (?<![\d-])\d{3}-\d{4}(?!\d)                                 # local phone
    | (?<!\d)(?:19|20)\d{2}-[01]\d-[0-3]\d(?!\d)                  # ISO date
    | (?<!\d)[01]?\d/[0-3]?\d/(?:19|20)\d{2}(?!\d)                # US date
    | (?<!\d)\d{6,}(?!\d)(?!\s?(?:bytes|ms)\b)                     # record number, HL7 date
    """,
    re.VERBOSE,
)
# Keys of a conversion issue or a destination's OperationOutcome issue that hold the value itself.
_ISSUE_VALUE_KEYS: Final = frozenset({"value"})
# Keys that say where an issue is and what kind it is: readable even when nothing else can be.
_ISSUE_WHERE_KEYS: Final = frozenset(
    {"severity", "code", "expression", "location", "segment", "field", "target", "origin"}
)

Masked = TypeVar("Masked")


def mask_free_text(value: Masked, phi: MessagePhi = NO_PHI) -> Masked:
    """``value`` as a viewer may see it: the one masking function for text that came from
    outside or quotes what did, on every surface (pages, API, websocket events, test bench).

    ``value`` is a string (an error detail, an attempt's error or response summary) or the
    structured detail around one (a conversion issue, an OperationOutcome issue, a list of them);
    the same type comes back. In every string, the message's own PHI values (``phi``: build it
    once per message with ``message_phi``; ``NO_PHI`` when no message is at hand), quoted values,
    HL7 fragments and PHI-looking patterns (e-mail, SSN, phone, dates, long numbers) become
    ``***``; an issue's ``value`` is masked whole. The reason stays readable, and so do the keys
    and where it happened (segment, field, target, expression). With ``UNKNOWN_PHI`` (a pruned
    message) every string is masked whole but an issue's where and kind."""
    if isinstance(value, str):
        return _mask_string(value, phi)  # type: ignore[return-value]
    if isinstance(value, list):
        return [mask_free_text(item, phi) for item in value]  # type: ignore[return-value]
    if isinstance(value, dict):
        return {key: _mask_issue_item(key, item, phi) for key, item in value.items()}  # type: ignore[return-value]
    return value


def _mask_issue_item(key: str, item: Any, phi: MessagePhi) -> Any:
    if key in _ISSUE_VALUE_KEYS and item not in (None, ""):
        return MASK
    if key in _ISSUE_WHERE_KEYS and phi.unknown:  # where and what kind, never whom
        return mask_free_text(item, NO_PHI)
    return mask_free_text(item, phi)


def _mask_string(text: str, phi: MessagePhi) -> str:
    if not text:
        return text
    if phi.unknown:
        return MASK
    if phi.by_first_token:
        text = _mask_values(text, phi)
    text = _QUOTED.sub(lambda m: m.group(1) + MASK + m.group(1), text)
    text = _HL7_FRAGMENT.sub(lambda m: m.group(0)[:4] + MASK, text)
    if "@" in text:
        text = _EMAIL.sub(MASK, text)
    return _PHI_NUMBERS.sub(MASK, text) if _DIGIT.search(text) else text


def mask_text(text: str) -> str:
    """``mask_free_text`` without a message at hand (quoted values and patterns only)."""
    return mask_free_text(text)


def mask_routing(decisions: list[dict]) -> list[dict]:
    """A message's routing decisions as a viewer sees them: the rule (the analyst's, no PHI)
    stays readable; an engine error after it may quote a value, so that part is masked."""
    return [{**d, "reason": _mask_after_rule(str(d.get("reason", "")))} for d in decisions]


def _mask_after_rule(reason: str) -> str:
    rule, found, problem = reason.partition("` failed: ")
    return f"{rule}{found}{mask_text(problem)}" if found else reason


def mask_issue(issue: dict) -> dict:
    """``mask_free_text`` of one issue without a message at hand."""
    return mask_free_text(issue)


# --- bodies


def mask_body(raw: str, content_type: str, *, indent: int | None = None) -> str:
    """A message body as received, as a viewer sees it on the page and in the API alike: HL7 v2
    masked field by field, FHIR and a sender's own JSON value by value, and a body that does not
    parse masked whole (no part of it is known to be safe). ``indent`` lays JSON out for a page."""
    if "json" not in content_type:
        return mask_hl7(raw)
    try:
        data = bounded_json.loads(raw)
    except (ValueError, RecursionError):
        return MASK if raw else raw
    masked = mask_json(data) if content_type == CUSTOM_JSON else mask_fhir(data)
    return json.dumps(masked, ensure_ascii=False, indent=indent)


def lane_label(ordering_key: str) -> str:
    """An ordered lane named without the value that keys it (a patient identifier, often): the
    same key always gives the same label, so a viewer can still see which deliveries share one."""
    if not ordering_key:
        return ""
    return "lane-" + hashlib.sha256(ordering_key.encode()).hexdigest()[:10]
