"""What the HL7 v2 standard says about a message: names, datatypes and message grammars.

The hot path never comes here: `hl7v2.parse` splits and addresses fields in tens of
microseconds, while building hl7apy's element tree costs 11-14 ms a message. hl7apy is used as
what it is best at, a data dictionary of every version from 2.1 to 2.8.2: its tables give each
field's name, datatype, table and cardinality, each datatype's components, and each message
structure's segment grammar. On top of the fast reader's `Message` this module builds

- `describe(message)`: the analyst's parse tree (segment -> field -> repetition -> component ->
  subcomponent), each node named and typed for the message's own version, each carrying the
  `Path` string that `Message.get` reads, so the tree and the field rules speak one language;
- `validate_structure(message)`: issues against the standard (required fields and segments,
  segment order, repetition, primitive formats), for the test bench and on demand, never on
  the hot path.

Versions the tables do not have (2.3.z, 2.9, empty) are read with the nearest version below
(default 2.5); a segment the version does not define (PRT in a 2.5.1 message) is described from
the nearest version that does, and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any, Literal

from adapters.codecs.hl7v2 import Message, Segment, unescape

DEFAULT_VERSION = "2.5"

# Segment names are not in hl7apy's tables; these are the standard's titles.
SEGMENT_TITLES = {
    "ACC": "Accident",
    "AIG": "Appointment Information - General Resource",
    "AIL": "Appointment Information - Location Resource",
    "AIP": "Appointment Information - Personnel Resource",
    "AIS": "Appointment Information - Service",
    "AL1": "Patient Allergy Information",
    "ARV": "Access Restriction",
    "BHS": "Batch Header",
    "BLG": "Billing",
    "BTS": "Batch Trailer",
    "CTD": "Contact Data",
    "CTI": "Clinical Trial Identification",
    "DB1": "Disability",
    "DG1": "Diagnosis",
    "DRG": "Diagnosis Related Group",
    "DSC": "Continuation Pointer",
    "ERQ": "Event Replay Query",
    "ERR": "Error",
    "EVN": "Event Type",
    "FHS": "File Header",
    "FT1": "Financial Transaction",
    "FTS": "File Trailer",
    "GT1": "Guarantor",
    "IN1": "Insurance",
    "IN2": "Insurance Additional Information",
    "IN3": "Insurance Additional Information, Certification",
    "MFE": "Master File Entry",
    "MFI": "Master File Identification",
    "MRG": "Merge Patient Information",
    "MSA": "Message Acknowledgment",
    "MSH": "Message Header",
    "NK1": "Next of Kin / Associated Parties",
    "NTE": "Notes and Comments",
    "OBR": "Observation Request",
    "OBX": "Observation/Result",
    "ORC": "Common Order",
    "PD1": "Patient Additional Demographic",
    "PDA": "Patient Death and Autopsy",
    "PID": "Patient Identification",
    "PR1": "Procedures",
    "PRA": "Practitioner Detail",
    "PRB": "Problem Details",
    "PRT": "Participation Information",
    "PTH": "Pathway",
    "PV1": "Patient Visit",
    "PV2": "Patient Visit - Additional Information",
    "QAK": "Query Acknowledgment",
    "QPD": "Query Parameter Definition",
    "QRD": "Original-Style Query Definition",
    "QRF": "Original-Style Query Filter",
    "RF1": "Referral Information",
    "RGS": "Resource Group",
    "ROL": "Role",
    "RXA": "Pharmacy/Treatment Administration",
    "RXC": "Pharmacy/Treatment Component Order",
    "RXD": "Pharmacy/Treatment Dispense",
    "RXE": "Pharmacy/Treatment Encoded Order",
    "RXO": "Pharmacy/Treatment Order",
    "RXR": "Pharmacy/Treatment Route",
    "SCH": "Scheduling Activity Information",
    "SFT": "Software Segment",
    "SPM": "Specimen",
    "STF": "Staff Identification",
    "TQ1": "Timing/Quantity",
    "TQ2": "Timing/Quantity Relationship",
    "TXA": "Transcription Document Header",
    "UB1": "UB82",
    "UB2": "Uniform Billing Data",
}

# Trigger events sharing a message structure (HL7 table 0354), for messages whose MSH-9 has no
# third component. Earlier entries win; a structure the version lacks is skipped.
_SHARED_STRUCTURES = (
    ("ADT_A01", "A01 A04 A08 A13"),
    ("ADT_A05", "A05 A14 A28 A31"),
    ("ADT_A01", "A05 A14 A28 A31"),  # before 2.4 these used ADT_A01
    ("ADT_A06", "A06 A07"),
    ("ADT_A09", "A09 A10 A11"),
    ("ADT_A21", "A21 A22 A23 A25 A26 A27 A29 A32 A33"),
    ("ADT_A30", "A30 A34 A35 A36 A46 A47 A48 A49"),
    ("ADT_A39", "A39 A40 A41 A42"),
    ("ADT_A43", "A43 A44"),
    ("ADT_A50", "A50 A51"),
    ("ADT_A52", "A52 A53"),
    ("ADT_A54", "A54 A55"),
    ("ADT_A61", "A61 A62"),
    ("SIU_S12", "S12 S13 S14 S15 S16 S17 S18 S19 S20 S21 S22 S23 S24 S26"),
    ("MDM_T01", "T01 T03 T05 T07 T09 T11"),
    ("MDM_T02", "T02 T04 T06 T08 T10"),
    ("BAR_P01", "P01 P05"),
    ("PPR_PC1", "PC1 PC2 PC3"),
    ("ORU_R30", "R30 R31 R32"),
    ("ORF_R04", "R04"),
    ("RDE_O11", "O11 O25"),
)
_EVENT_STRUCTURES: dict[tuple[str, str], list[str]] = {}
for _structure, _events in _SHARED_STRUCTURES:
    for _event in _events.split():
        _EVENT_STRUCTURES.setdefault((_structure[:3], _event), []).append(_structure)


# ------------------------------------------------------------------------------ the dictionary


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    number: int
    label: str
    datatype: str
    table: str
    components: tuple[ComponentSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class FieldSpec:
    number: int
    label: str
    datatype: str
    table: str
    min: int
    max: int  # -1: unbounded
    components: tuple[ComponentSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    name: str
    version: str  # the table version it comes from (may differ from the message's)
    fields: tuple[FieldSpec, ...]  # in order; withdrawn fields (gaps in the numbering) absent

    @property
    def count(self) -> int:
        """The highest field number the version defines."""
        return self.fields[-1].number if self.fields else 0

    def field(self, n: int) -> FieldSpec | None:
        if 1 <= n <= len(self.fields) and self.fields[n - 1].number == n:
            return self.fields[n - 1]
        return next((f for f in self.fields if f.number == n), None)


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


@lru_cache(maxsize=1)
def supported_versions() -> tuple[str, ...]:
    import hl7apy

    return tuple(sorted(hl7apy.SUPPORTED_LIBRARIES, key=_version_key))


@lru_cache(maxsize=64)
def table_version(version: str) -> str:
    """The hl7apy table set for an MSH-12 value: itself, else the nearest below, else 2.5."""
    versions = supported_versions()
    version = version.strip()
    if version in versions:
        return version
    key = _version_key(version)
    if not key or key[0] != 2:
        return DEFAULT_VERSION
    below = [v for v in versions if _version_key(v) <= key]
    return below[-1] if below else versions[0]


def _library(version: str) -> ModuleType:
    import hl7apy

    return hl7apy.load_library(version)


def _label(long_name: str) -> str:
    """'MOTHER_S_MAIDEN_NAME' -> "Mother's Maiden Name"; 'SET_ID_PID' -> 'Set ID - PID'."""
    text = long_name.replace("_E_G_", " e.g. ").replace("_S_", "'s ")
    words = [w for w in re.split(r"[_ ]+", text) if w]
    small = {"OF", "OR", "AND", "FOR", "TO", "THE", "IN", "BY", "ON", "AT", "A", "AN"}
    out = []
    for i, word in enumerate(words):
        if (
            word in ("ID", "SSN", "NPI", "HL7", "ISO", "DOB", "URL", "II", "III", "IV")
            or any(c.isdigit() for c in word)
            or (len(word) <= 3 and not any(c in "AEIOUY" for c in word))  # JR, MD, PH
        ):
            out.append(word)
        elif word in small and i:
            out.append(word.lower())
        elif len(word) == 3 and word in SEGMENT_TITLES or word.startswith("e.g."):
            out.append(word)
        else:
            out.append(word[:1] + word[1:].lower())
    return " ".join(out)


def _number(child_name: Any, prefix: str) -> int | None:
    """'PID_5' -> 5. hl7apy leaves withdrawn fields out of 2.6+ tables but keeps the numbers in
    the names, so the position in its tuple is not the field number."""
    head, _, tail = str(child_name).rpartition("_")
    return int(tail) if tail.isdigit() and (not prefix or head == prefix) else None


def _component_specs(children: Any, lib: ModuleType, depth: int = 0) -> tuple[ComponentSpec, ...]:
    specs = []
    for position, child in enumerate(children or (), start=1):
        ref = child[1]
        kind, sub, datatype, long_name, table = ref[0], ref[1], ref[2], ref[3], ref[4]
        nested: tuple[ComponentSpec, ...] = ()
        if kind == "sequence" and depth == 0:  # subcomponents; HL7 has no deeper level
            sub = sub or lib.DATATYPES_STRUCTS.get(datatype)
            nested = _component_specs(sub, lib, depth + 1)
        number = _number(child[0], "") or position
        specs.append(ComponentSpec(number, _label(long_name or ""), datatype, table or "", nested))
    return tuple(specs)


def component_spec(specs: tuple[ComponentSpec, ...], n: int) -> ComponentSpec | None:
    if 1 <= n <= len(specs) and specs[n - 1].number == n:
        return specs[n - 1]
    return next((c for c in specs if c.number == n), None)


@lru_cache(maxsize=128)
def datatype_components(datatype: str, version: str) -> tuple[ComponentSpec, ...]:
    """The components of a composite datatype in a version ((): primitive or unknown)."""
    lib = _library(table_version(version))
    return _component_specs(lib.DATATYPES_STRUCTS.get(datatype), lib)


def _segment_in(name: str, version: str) -> SegmentSpec | None:
    lib = _library(version)
    ref = lib.ELEMENTS["Segment"].get(name)
    if not isinstance(ref, tuple) or len(ref) < 2 or not isinstance(ref[1], tuple):
        return None
    fields = []
    for child in ref[1]:
        number = _number(child[0], name)
        fref = child[1]
        if number is None or not isinstance(fref, tuple) or len(fref) < 5:
            continue
        kind, sub, datatype, long_name, table = fref[0], fref[1], fref[2], fref[3], fref[4]
        lo, hi = child[2]
        comps: tuple[ComponentSpec, ...] = ()
        if kind == "sequence":
            comps = _component_specs(sub or lib.DATATYPES_STRUCTS.get(datatype), lib)
        fields.append(
            FieldSpec(number, _label(long_name or ""), datatype, table or "", lo, hi, comps)
        )
    return SegmentSpec(name, version, tuple(sorted(fields, key=lambda f: f.number)))


def _search_order(version: str, newer_first: bool) -> tuple[str, ...]:
    own = table_version(version)
    versions = supported_versions()
    at = versions.index(own)
    newer, older = versions[at + 1 :], tuple(reversed(versions[:at]))
    return (own, *newer, *older) if newer_first else (own, *older, *newer)


@lru_cache(maxsize=1024)
def segment_spec(name: str, version: str) -> SegmentSpec | None:
    """A segment's fields in ``version``; else from the nearest version that defines it
    (newer first: segments are added over time). None for Z-segments and unknown names."""
    if name[:1] == "Z":
        return None
    for candidate in _search_order(version, newer_first=True):
        spec = _segment_in(name, candidate)
        if spec is not None:
            return spec
    return None


@lru_cache(maxsize=4096)
def field_spec(name: str, n: int, version: str) -> tuple[FieldSpec | None, str]:
    """Field ``n`` of segment ``name`` and the table version it was found in. A field withdrawn
    from ``version`` (EVN-1 in 2.8) is taken from the nearest older version that has it."""
    spec = segment_spec(name, version)
    if spec is None:
        return None, ""
    found = spec.field(n)
    if found is not None or n > spec.count:
        return found, spec.version
    for candidate in _search_order(spec.version, newer_first=False)[1:]:
        other = _segment_in(name, candidate)
        if other is not None and (found := other.field(n)) is not None:
            return found, candidate
    return None, ""


def message_structure(message: Message, version: str | None = None) -> str | None:
    """The message structure id (``ADT_A01`` for ADT^A04) known to the version's tables."""
    lib = _library(table_version(version if version is not None else message.version))
    known = lib.ELEMENTS["Message"]
    code, event = message.message_code, message.trigger_event
    candidates = [message.msh.get(9, 3)]
    if event:
        candidates += [f"{code}_{event}", *_EVENT_STRUCTURES.get((code, event), ())]
    candidates.append(code)
    found = next((c for c in candidates if c and c in known), None)
    if found is None and code:
        # ORF with no trigger event: fine when the code has one structure only (ORF_R04).
        only = [name for name in known if name.startswith(f"{code}_")]
        found = only[0] if len(only) == 1 else None
    return found


# ------------------------------------------------------------------------------------ the tree


@dataclass(slots=True)
class Node:
    """One node of the parse tree. ``path`` is what `Message.get` reads (leaves give ``value``).

    kind: message, segment, field, repetition, component or subcomponent. A field with one
    repetition holds its components directly (path ``PID-5.1``); a repeating field holds one
    ``repetition`` node per repetition (``PID-3(2)``, components ``PID-3(2).1``).
    ``value`` is the unescaped text on leaves and the raw ER7 text on the others.
    """

    kind: str
    path: str
    name: str
    label: str = ""
    datatype: str = ""
    value: str = ""
    table: str = ""
    notes: list[str] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, path: str) -> Node | None:
        return next((n for n in self.walk() if n.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "path": self.path, "name": self.name}
        for key in ("label", "datatype", "value", "table"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.notes:
            out["notes"] = list(self.notes)
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


def describe(message: Message, *, include_empty: bool = False) -> Node:
    """The parse tree of ``message`` with names and datatypes of its version (see `Node`)."""
    version = message.version
    tables = table_version(version)
    structure = message_structure(message, version)
    root = Node(
        "message",
        "",
        message.message_type,
        label=f"{message.message_type} message, HL7 v{version or '?'}",
        datatype=structure or "",
        value="",
    )
    if tables != version:
        root.notes.append(f"read with the v{tables} tables")
    if structure is None:
        root.notes.append("message structure unknown to the tables")
    seen: dict[str, int] = {}
    for seg in message.segments:
        occurrence = seen[seg.name] = seen.get(seg.name, 0) + 1
        root.children.append(_describe_segment(seg, occurrence, version, include_empty))
    return root


def _segment_path(seg: Segment, occurrence: int) -> str:
    return seg.name if occurrence == 1 else f"{seg.name}({occurrence})"


def _describe_segment(seg: Segment, occurrence: int, version: str, include_empty: bool) -> Node:
    spec = segment_spec(seg.name, version)
    path = _segment_path(seg, occurrence)
    node = Node("segment", path, seg.name, label=SEGMENT_TITLES.get(seg.name, ""), value="")
    if seg.name[0] == "Z":
        node.label = node.label or "Site-defined segment"
    if spec is None:
        node.notes.append(f"{seg.name} is not defined in any HL7 version the tables know")
    elif spec.version != table_version(version):
        node.notes.append(
            f"{seg.name} is not defined in v{version}; described from v{spec.version}"
        )
    for n in range(1, len(seg.fields)):
        if not seg[n] and not include_empty:
            continue
        fspec, found_in = field_spec(seg.name, n, version)
        fnode = _describe_field(seg, path, n, fspec, spec, found_in or version)
        if fspec is not None and spec is not None and found_in != spec.version:
            fnode.notes.append(f"withdrawn from v{spec.version}; described from v{found_in}")
        node.children.append(fnode)
    return node


def _describe_field(
    seg: Segment,
    seg_path: str,
    n: int,
    fspec: FieldSpec | None,
    spec: SegmentSpec | None,
    version: str,
) -> Node:
    path = f"{seg_path}-{n}"
    node = Node("field", path, f"{seg.name}-{n}", value=seg[n])
    comps: tuple[ComponentSpec, ...] = ()
    if fspec is not None:
        node.label, node.datatype, node.table = fspec.label, fspec.datatype, fspec.table
        comps = fspec.components
        if fspec.datatype == "varies" and seg.name == "OBX" and n == 5:
            node.datatype = seg.get(2) or "varies"
            comps = datatype_components(node.datatype, version)
            node.notes.append("datatype given by OBX-2")
    elif spec is not None:
        node.notes.append(f"beyond the {spec.count} fields {seg.name} defines")
    if seg.name == "MSH" and n in (1, 2):
        return node  # the separators themselves: a leaf, never split
    reps = seg.repetitions(n)
    if len(reps) == 1:
        node.children = _describe_components(reps[0].raw, seg, path, node.datatype, comps)
        if not node.children:  # a plain value, or only empty components ("^^^" reads as "")
            node.value = seg.get(n)
        return node
    for r, rep in enumerate(reps, start=1):
        rpath = f"{path}({r})"
        rnode = Node("repetition", rpath, f"{seg.name}-{n}({r})", node.label, node.datatype)
        rnode.children = _describe_components(rep.raw, seg, rpath, node.datatype, comps)
        rnode.value = rep.raw if rnode.children else seg.get(n, rep=r)
        node.children.append(rnode)
    return node


def _describe_components(
    raw: str, seg: Segment, path: str, datatype: str, specs: tuple[ComponentSpec, ...]
) -> list[Node]:
    """Component nodes of one repetition, or [] when it is a single plain value."""
    enc = seg.enc
    if enc.component not in raw and enc.subcomponent not in raw:
        return []
    nodes = []
    for c, comp in enumerate(raw.split(enc.component), start=1):
        if not comp:
            continue
        cspec = component_spec(specs, c)
        cnode = Node("component", f"{path}.{c}", f"{datatype or '?'}.{c}", value=comp)
        if cspec:
            cnode.label, cnode.datatype, cnode.table = cspec.label, cspec.datatype, cspec.table
        if enc.subcomponent in comp:
            subspecs = cspec.components if cspec else ()
            for s, sub in enumerate(comp.split(enc.subcomponent), start=1):
                if not sub:
                    continue
                sspec = component_spec(subspecs, s)
                snode = Node("subcomponent", f"{path}.{c}.{s}", f"{cnode.datatype or '?'}.{s}")
                snode.value = unescape(sub, enc)
                if sspec:
                    snode.label, snode.datatype, snode.table = (
                        sspec.label,
                        sspec.datatype,
                        sspec.table,
                    )
                cnode.children.append(snode)
        if not cnode.children:  # read whole, a component gives its first subcomponent
            cnode.value = unescape(comp.split(enc.subcomponent, 1)[0], enc)
        nodes.append(cnode)
    return nodes


# ------------------------------------------------------------------------------ validation

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding against the standard. ``path`` uses the `Path` syntax ('' for the message,
    ``OBX(2)`` for a whole segment); ``segment_index`` is the 1-based position in the message."""

    severity: Severity
    code: str
    message: str
    path: str = ""
    segment_index: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message}"


_FORMATS = {
    "NM": re.compile(r"[+-]?(\d+\.?\d*|\.\d+)\Z"),
    "SI": re.compile(r"\d+\Z"),
    "DT": re.compile(r"\d{4}((0[1-9]|1[0-2])((0[1-9]|[12]\d|3[01]))?)?\Z"),
    "TM": re.compile(r"([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,4})?)?)?([+-]\d{4})?\Z"),
    "DTM": re.compile(
        r"\d{4}((0[1-9]|1[0-2])((0[1-9]|[12]\d|3[01])(([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,4})?)?)?)?)?)?"
        r"([+-]\d{4})?\Z"
    ),
}
_FORMATS["TS"] = _FORMATS["DTM"]
_FORMAT_NAMES = {
    "NM": "a number",
    "SI": "a sequence number",
    "DT": "a date (YYYY[MM[DD]])",
    "TM": "a time (HH[MM[SS[.S]]][+/-ZZZZ])",
    "DTM": "a date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])",
    "TS": "a date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])",
}
_CODE = re.compile(r"[A-Z0-9]{3}\Z")


def validate_structure(message: Message) -> list[Issue]:
    """Check ``message`` against its version's tables; an empty list means nothing found.

    Errors: a required segment or field missing, a value that is not its primitive datatype
    (NM, SI, DT, TM, DTM/TS), an MSH-9 that is not a message code and trigger event. Warnings:
    segment order, a non-repeating field repeated, fields or segments the version does not
    define, values the sender marked truncated. Info: Z-segments, tables of another version.
    """
    issues: list[Issue] = []
    version = message.version
    tables = table_version(version)
    if not version:
        issues.append(
            Issue("warning", "version", f"MSH-12 is empty; read as v{tables}", "MSH-12", 1)
        )
    elif tables != version:
        issues.append(
            Issue("info", "version", f"v{version} read with the v{tables} tables", "MSH-12", 1)
        )
    _check_message_type(message, issues)
    structure = message_structure(message, version)
    if structure is None:
        issues.append(
            Issue(
                "warning",
                "structure",
                f"no message structure known for {message.message_type} in v{tables}: "
                "segment order not checked",
                "MSH-9",
                1,
            )
        )
    else:
        _check_order(message, structure, tables, issues)
    seen: dict[str, int] = {}
    for seg in message.segments:
        occurrence = seen[seg.name] = seen.get(seg.name, 0) + 1
        _check_segment(seg, _segment_path(seg, occurrence), version, issues)
    return issues


def _check_message_type(message: Message, issues: list[Issue]) -> None:
    code, event = message.message_code, message.trigger_event
    if not _CODE.match(code):
        issues.append(
            Issue("error", "message_type", f"MSH-9.1 {code!r} is not a message code", "MSH-9.1", 1)
        )
    if event and not _CODE.match(event):
        issues.append(
            Issue(
                "error", "message_type", f"MSH-9.2 {event!r} is not a trigger event", "MSH-9.2", 1
            )
        )


def _check_segment(seg: Segment, path: str, version: str, issues: list[Issue]) -> None:
    if seg.name[0] == "Z":
        issues.append(
            Issue(
                "info",
                "z_segment",
                f"site-defined segment {seg.name}, kept as sent",
                path,
                seg.index,
            )
        )
        return
    spec = segment_spec(seg.name, version)
    if spec is None:
        issues.append(
            Issue(
                "warning", "unknown_segment", f"{seg.name} is not an HL7 segment", path, seg.index
            )
        )
        return
    if spec.version != table_version(version):
        issues.append(
            Issue(
                "warning",
                "segment_version",
                f"{seg.name} is not defined in v{version} (it is in v{spec.version})",
                path,
                seg.index,
            )
        )
    enc = seg.enc
    for fspec in spec.fields:
        n = fspec.number
        if seg.name == "MSH" and n in (1, 2):
            continue
        fpath = f"{path}-{n}"
        reps = seg.repetitions(n)
        if not reps:
            if fspec.min >= 1:
                issues.append(
                    Issue(
                        "error",
                        "required_field",
                        f"{fspec.label or 'field'} is required",
                        fpath,
                        seg.index,
                    )
                )
            continue
        if fspec.max == 1 and len(reps) > 1:
            issues.append(
                Issue(
                    "warning",
                    "repetition",
                    f"{fspec.label or 'field'} does not repeat, {len(reps)} repetitions sent",
                    fpath,
                    seg.index,
                )
            )
        datatype = seg.get(2) if (seg.name == "OBX" and n == 5) else fspec.datatype
        comps = fspec.components
        if datatype != fspec.datatype:
            comps = datatype_components(datatype, spec.version)
        for r, rep in enumerate(reps, start=1):
            rpath = fpath if len(reps) == 1 else f"{fpath}({r})"
            _check_value(rep.raw, datatype, comps, rpath, seg, issues)
    if len(seg.fields) - 1 > spec.count:
        extra = [n for n in range(spec.count + 1, len(seg.fields)) if seg[n]]
        if extra:
            issues.append(
                Issue(
                    "warning",
                    "extra_field",
                    f"{seg.name} defines {spec.count} fields in v{spec.version}; "
                    f"{seg.name}-{extra[0]} and after are not in the standard",
                    f"{path}-{extra[0]}",
                    seg.index,
                )
            )
    if enc.truncation:
        for n in range(3 if seg.name == "MSH" else 1, len(seg.fields)):
            if seg[n].endswith(enc.truncation):
                issues.append(
                    Issue(
                        "warning",
                        "truncated",
                        f"the value ends with the truncation character {enc.truncation!r}: "
                        "the sender cut it short",
                        f"{path}-{n}",
                        seg.index,
                    )
                )


def _check_value(
    raw: str,
    datatype: str,
    comps: tuple[ComponentSpec, ...],
    path: str,
    seg: Segment,
    issues: list[Issue],
) -> None:
    enc = seg.enc
    if raw == '""':  # the explicit null
        return
    if not comps:
        value = raw.split(enc.component, 1)[0].split(enc.subcomponent, 1)[0]
        _check_format(unescape(value, enc), datatype, path, seg, issues)
        return
    if datatype == "TS":  # TS.1 is a DTM whatever type the older tables give it
        first = raw.split(enc.component, 1)[0].split(enc.subcomponent, 1)[0]
        _check_format(unescape(first, enc), "DTM", f"{path}.1", seg, issues)
        return
    for c, comp in enumerate(raw.split(enc.component), start=1):
        spec = component_spec(comps, c) if comp else None
        if spec is None:
            continue
        if spec.components and spec.datatype == "TS":
            comp = comp.split(enc.subcomponent, 1)[0]
            _check_format(unescape(comp, enc), "DTM", f"{path}.{c}.1", seg, issues)
        elif not spec.components:
            _check_format(
                unescape(comp.split(enc.subcomponent, 1)[0], enc),
                spec.datatype,
                f"{path}.{c}",
                seg,
                issues,
            )


def _check_format(value: str, datatype: str, path: str, seg: Segment, issues: list[Issue]) -> None:
    pattern = _FORMATS.get(datatype)
    if pattern is None or not value or value == '""':
        return
    if not pattern.match(value.strip()):
        issues.append(
            Issue(
                "error",
                "data_type",
                f"{value[:40]!r} is not {_FORMAT_NAMES[datatype]} ({datatype})",
                path,
                seg.index,
            )
        )


# --------------------------------------------------------------------------- segment order


def _check_order(message: Message, structure: str, tables: str, issues: list[Issue]) -> None:
    """Match the segment sequence against the structure's grammar, tolerantly.

    Segments the structure never mentions (Z-segments, PRT in a 2.5.1 message) are set aside
    first; the rest are matched group by group. A group is entered on a segment that can open
    it; if the group then misses a required part and that segment could also open what follows
    (the next order, say), the group is not taken. A segment that fits nowhere is reported and
    matching resumes after it, so one misplaced segment gives one issue, not a cascade.
    """
    ref = _library(tables).ELEMENTS["Message"][structure]
    mentioned = _segments_in(ref)
    paths: dict[int, str] = {}
    seen: dict[str, int] = {}
    for seg in message.segments:
        seen[seg.name] = seen.get(seg.name, 0) + 1
        paths[seg.index] = _segment_path(seg, seen[seg.name])
    segs = []
    for seg in message.segments:
        if seg.name in mentioned:
            segs.append(seg)
        elif (
            seg.name[0] != "Z"
            and (spec := segment_spec(seg.name, tables)) is not None
            and spec.version == tables  # else _check_segment says the version lacks it
        ):
            issues.append(
                Issue(
                    "warning",
                    "segment_order",
                    f"{seg.name} is not part of the {structure} structure",
                    paths[seg.index],
                    seg.index,
                )
            )
    # Two readings of a displaced segment: skip ahead to the required entry (the segments in
    # between are out of place), or report the entry missing (and it out of place later).
    # Keep the reading that moves fewer segments, then the one with fewer errors.
    readings = [_match(segs, paths, structure, ref, skip_ahead) for skip_ahead in (True, False)]
    issues.extend(
        min(
            readings,
            key=lambda found: (
                sum(i.code == "segment_order" for i in found),
                sum(i.severity == "error" for i in found),
            ),
        )
    )


def _match(
    segs: list[Segment], paths: dict[int, str], structure: str, ref: Any, skip_ahead: bool
) -> list[Issue]:
    issues: list[Issue] = []
    matcher = _Matcher(segs, paths, structure, skip_ahead)
    pos = matcher.sequence(ref, 0, _NOTHING, issues)
    while pos < len(segs):
        issues.append(matcher.stray(pos))
        # Resume as if the body began again after the stray segment; what the top level
        # misses there (MSH, EVN...) was judged in the first pass, so it is not reported again.
        pos = matcher.sequence(ref, pos + 1, _NOTHING, issues, report_missing=False)
    return issues


_SEGMENTS_IN: dict[int, frozenset[str]] = {}


def _segments_in(ref: Any) -> frozenset[str]:
    """Every segment name a grammar ref mentions (cached by identity: the tables live forever)."""
    found = _SEGMENTS_IN.get(id(ref))
    if found is None:
        names: set[str] = set()
        for name, sub, _card, kind in ref[1]:
            names |= {name} if kind == "SEG" else _segments_in(sub)
        found = _SEGMENTS_IN[id(ref)] = frozenset(names)
    return found


_NOTHING: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


class _Matcher:
    """Greedy matcher of a segment sequence against an hl7apy message grammar.

    A grammar entry is ``(name, ref, (min, max), "SEG" | "GRP")``; a group's ref is
    ``("sequence" | "choice", entries)``. What may come after the part being matched is carried
    as ``follow`` = (segments that can open it, segments it mentions anywhere).
    """

    def __init__(
        self, segs: list[Segment], paths: dict[int, str], structure: str, skip_ahead: bool = True
    ) -> None:
        self.skip_ahead = skip_ahead
        self.segs = segs
        self.names = [s.name for s in segs]
        self.paths = paths
        self.structure = structure
        self._first: dict[int, frozenset[str]] = {}
        self._rest: dict[tuple[int, int], tuple[frozenset[str], frozenset[str]]] = {}

    def first(self, entry: Any) -> frozenset[str]:
        """Segments that can open ``entry``."""
        name, sub, _card, kind = entry
        if kind == "SEG":
            return frozenset((name,))
        key = id(sub)
        if key not in self._first:
            names: set[str] = set()
            for child in sub[1]:
                names |= self.first(child)
                if sub[0] != "choice" and child[2][0] >= 1:
                    break
            self._first[key] = frozenset(names)
        return self._first[key]

    def rest(self, ref: Any, start: int) -> tuple[frozenset[str], frozenset[str]]:
        """(openers, mentioned) of a sequence's entries from ``start`` on."""
        key = (id(ref), start)
        if key not in self._rest:
            openers: set[str] = set()
            mentioned: set[str] = set()
            if ref[0] != "choice":
                for name, sub, card, kind in ref[1][start:]:
                    openers |= self.first((name, sub, card, kind))
                    mentioned |= {name} if kind == "SEG" else _segments_in(sub)
            self._rest[key] = (frozenset(openers), frozenset(mentioned))
        return self._rest[key]

    def element(
        self,
        entry: Any,
        pos: int,
        after: tuple[frozenset[str], frozenset[str]],
        repeats: bool,
        issues: list[Issue],
    ) -> int:
        """Match one occurrence of ``entry`` at ``pos``; returns the new position."""
        name, sub, _card, kind = entry
        if pos >= len(self.names):
            return pos
        current = self.names[pos]
        if kind == "SEG":
            return pos + 1 if current == name else pos
        opening = self.first(entry)
        if current not in opening:
            return pos
        inner: list[Issue] = []
        # A repeating group may come again: its own openers can follow its end too.
        follow = (after[0] | opening, after[1] | _segments_in(sub)) if repeats else after
        new = self.sequence(sub, pos, follow, inner)
        if current in after[0] and any(i.code == "required_segment" for i in inner):
            return pos  # incomplete here, and the segment can open what follows: not this group
        issues.extend(inner)
        return new

    def sequence(
        self,
        ref: Any,
        pos: int,
        follow: tuple[frozenset[str], frozenset[str]],
        issues: list[Issue],
        report_missing: bool = True,
    ) -> int:
        """Match a group's entries from ``pos``; ``follow`` describes what may come after it.

        Recovery, so that one misplaced segment costs one issue: a segment no entry ahead
        mentions is skipped as stray; so is a segment nothing ahead can open when the next one
        fits the current entry; a required entry found within three segments is reached by
        skipping what lies between; a required group whose opening segment is missing is still
        matched on its body (and the missing opener reported).
        """
        kind, entries = ref
        if kind == "choice":
            for entry in entries:
                new = self.element(entry, pos, follow, False, issues)
                if new != pos:
                    return new
            return pos
        n = len(self.names)
        for i, entry in enumerate(entries):
            name, sub, (lo, hi), entry_kind = entry
            rest_open, rest_all = self.rest(ref, i + 1)
            after = (rest_open | follow[0], rest_all | follow[1])
            here_open, here_all = self.rest(ref, i)
            ahead_open, ahead_all = here_open | follow[0], here_all | follow[1]
            opening = self.first(entry)
            repeats = hi == -1 or hi > 1
            count = 0
            while hi == -1 or count < hi:
                while pos < n and self.names[pos] not in ahead_all:
                    issues.append(self.stray(pos))
                    pos += 1
                new = self.element(entry, pos, after, repeats, issues)
                if (
                    new == pos
                    and pos + 1 < n
                    and self.names[pos] not in ahead_open
                    and self.names[pos + 1] in opening
                ):
                    trial: list[Issue] = [self.stray(pos)]
                    new = self.element(entry, pos + 1, after, repeats, trial)
                    if new != pos + 1:
                        issues.extend(trial)
                    else:
                        new = pos
                if new == pos:
                    break
                pos, count = new, count + 1
            if count < lo and pos < n:
                pos, count = self._recover(entry, pos, after, repeats, issues)
            if count < lo and report_missing:
                issues.append(self._missing(name, entry_kind, pos))
        return pos

    def _recover(
        self,
        entry: Any,
        pos: int,
        after: tuple[frozenset[str], frozenset[str]],
        repeats: bool,
        issues: list[Issue],
    ) -> tuple[int, int]:
        """A required entry did not match at ``pos``: try the two repairs; (pos, matched)."""
        name, sub, _card, kind = entry
        n = len(self.names)
        opening = self.first(entry)
        skip = (
            next((j for j in range(1, 4) if pos + j < n and self.names[pos + j] in opening), None)
            if self.skip_ahead
            else None
        )
        if skip is not None:
            trial: list[Issue] = []
            new = self.element(entry, pos + skip, after, repeats, trial)
            if new != pos + skip:
                issues.extend(self.stray(p) for p in range(pos, pos + skip))
                issues.extend(trial)
                return new, 1
        if (
            kind == "GRP"
            and self.names[pos] in _segments_in(sub)
            and self.names[pos] not in after[0]
        ):
            inner: list[Issue] = []
            new = self.sequence(sub, pos, after, inner)
            if new != pos:
                issues.extend(inner)
                return new, 1
        return pos, 0

    def stray(self, pos: int) -> Issue:
        seg = self.segs[pos]
        return Issue(
            "warning",
            "segment_order",
            f"{seg.name} is out of place for {self.structure}",
            self.paths[seg.index],
            seg.index,
        )

    def _missing(self, name: str, kind: str, pos: int) -> Issue:
        what = "segment" if kind == "SEG" else "group"
        if pos < len(self.segs):
            seg = self.segs[pos]
            return Issue(
                "error",
                "required_segment",
                f"required {what} {name} of {self.structure} is missing before {seg.name}",
                self.paths[seg.index],
                seg.index,
            )
        return Issue(
            "error",
            "required_segment",
            f"required {what} {name} of {self.structure} is missing at the end",
        )
