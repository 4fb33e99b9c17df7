"""HL7 v2 (ER7, pipe-and-hat) codec: a tolerant reader and a writer.

The reader splits bytes on the separators the message declares and nothing more: fields stay raw
strings until something asks for them, and unescaping happens only on the value returned. That
keeps the hot path at a few dozen microseconds per message (hl7apy's full tree costs ~12 ms),
while `Path` gives the same `PID-3(2).1` addressing that field rules and the test bench use.
Structure knowledge (names, datatypes, message grammars) lives in `hl7v2_structure`, off the hot
path; batch files are split by `hl7v2_batch.split_batch`.

Indexing follows the standard's numbering everywhere: ``segment[3]`` is PID-3, and for MSH
``segment[1]`` is the field separator and ``segment[2]`` the encoding characters, so MSH-9 is
``msh[9]`` as in every specification.

What the reader tolerates, and why (each is common in the field and has one reading):
segment separators ``\r``, ``\n`` or ``\r\n`` (mixed too), blank lines, spaces after the last
field, a UTF-8 byte order mark, MLLP framing bytes left around the message, MSH-2 with fewer than
four characters or with the escape character doubled (``^~\\&``, left by source-code string
literals), a line feed inside a field of a CR-separated message (kept as data), Z-segments and
segments unknown to the version, and text in any charset (UTF-8 first, then MSH-18, then latin-1
for the bytes UTF-8 cannot read). What it rejects, with the segment and field: anything before MSH
(``[SOM]`` markers, junk), segments glued together with spaces, a segment name that is not three
upper-case letters or digits, a second MSH or a batch envelope inside a message, MSH-2 characters
that repeat or are letters, and an empty MSH-9.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from adapters.base import AdapterError

# Kept for callers that split header lines themselves (Header.salvage); `split_segments` is the
# reader's own, faster and aware of line feeds inside fields.
SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
BOM = "\ufeff"
# Stripped around a message: whitespace, NUL padding, MLLP start/end bytes and a byte order mark.
_AROUND = " \t\r\n\x00\x0b\x1c\ufeff"
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})

# MSH-18 names (HL7 table 0211) -> Python codecs. Anything unknown falls back to latin-1.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "ISO IR6": "ascii",
    "ISO IR100": "latin-1",
    "ISO IR101": "iso8859-2",
    "ISO IR109": "iso8859-3",
    "ISO IR110": "iso8859-4",
    "ISO IR126": "iso8859-7",
    "ISO IR127": "iso8859-6",
    "ISO IR138": "iso8859-8",
    "ISO IR144": "iso8859-5",
    "ISO IR148": "iso8859-9",
    "ISO IR13": "shift_jis",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_1",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "CNS 11643-1992": "big5",
    "BIG-5": "big5",
    "WINDOWS-1252": "cp1252",
}
# The name `decode_bytes` reports when UTF-8 text carries stray latin-1 bytes (mixed encodings).
MIXED_CHARSET = "utf-8+latin-1"

# Segment names of the standard (2.2-2.8) that a glued-together message reveals; see
# `_reject_glued_segments`. Not a validation list: unknown segments are always accepted.
_STANDARD_SEGMENT_NAMES = """ABS ACC ADD AFF AIG AIL AIP AIS AL1 APR ARQ ARV AUT BLC BLG BPO BPX BTX CDM CER CM0 CM1 CM2
    CNS CON CSP CSR CSS CTD CTI DB1 DG1 DMI DRG DSC DSP ECD ECR EDU EQP EQU ERR EVN FAC FT1 GOL
    GP1 GP2 GT1 IAM IIM ILT IN1 IN2 IN3 INV IPC ISD ITM LAN LCC LCH LDP LOC LRL MFA MFE MFI MRG
    MSA MSH NCK NDS NK1 NPU NSC NST NTE OBR OBX ODS ODT OM1 OM2 OM3 OM4 OM5 OM6 OM7 ORC ORG OVR
    PCE PCR PD1 PDA PDC PEO PES PID PKG PMT PR1 PRA PRB PRC PRD PRT PSG PSH PTH PV1 PV2 PYE QAK
    QID QPD QRD QRF QRI RCP RDF RDT REL RF1 RFI RGS RMI ROL RQ1 RQD RXA RXC RXD RXE RXG RXO RXR
    SAC SCD SCH SCP SDD SFT SHP SID SLT SPM STF STZ TCC TCD TQ1 TQ2 TXA UAC UB1 UB2 URD URS VAR
    VND"""
_KNOWN_SEGMENTS = frozenset(_STANDARD_SEGMENT_NAMES.split())


class HL7Error(AdapterError):
    """A message that cannot be read. Names where: segment index (1-based), segment, field."""

    def __init__(
        self,
        reason: str,
        *,
        segment_index: int | None = None,
        segment: str | None = None,
        field: int | None = None,
    ) -> None:
        self.segment_index = segment_index
        self.segment = segment
        self.field = field
        where = []
        if segment:
            where.append(f"{segment}" + (f"-{field}" if field is not None else ""))
        if segment_index is not None:
            where.append(f"segment #{segment_index}")
        super().__init__(f"{reason} ({', '.join(where)})" if where else reason, permanent=True)
        self.bare_reason = reason

    @property
    def location(self) -> str:
        if not self.segment:
            return ""
        return self.segment + (f"-{self.field}" if self.field is not None else "")


@dataclass(frozen=True, slots=True)
class Encoding:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def msh2(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    @classmethod
    @lru_cache(maxsize=256)  # a sender writes MSH-2 the same way in every message it sends
    def from_msh(cls, field_sep: str, msh2: str) -> Encoding:
        chars = msh2[:5]
        if not chars:
            raise HL7Error(
                "MSH-2 (encoding characters) is empty", segment_index=1, segment="MSH", field=2
            )
        if msh2[2:4] == "\\\\" and len(msh2) >= 5 and len(set(msh2[:5])) == 4:
            # "^~\\&" (the escape character doubled, the way source-code string literals leave
            # it) has one reading only: the four distinct characters in their usual order.
            chars = (msh2[:3] + msh2[4:])[:5]
        # Missing trailing characters fall back to the defaults in order (some senders send "^~\").
        defaults = "^~\\&"
        padded = chars + defaults[len(chars) :] if len(chars) < 4 else chars
        comp, rep, esc, sub = padded[0], padded[1], padded[2], padded[3]
        trunc = padded[4] if len(padded) > 4 else ""
        used = [field_sep, comp, rep, esc, sub] + ([trunc] if trunc else [])
        if len(set(used)) != len(used):
            raise HL7Error(
                f"MSH-2 encoding characters {msh2!r} repeat a character or the field separator",
                segment_index=1,
                segment="MSH",
                field=2,
            )
        if any(c.isalnum() or c in "\r\n" for c in used):
            raise HL7Error(
                f"MSH-2 encoding characters {msh2!r} must not be letters, digits or line breaks",
                segment_index=1,
                segment="MSH",
                field=2,
            )
        return cls(field_sep, comp, rep, esc, sub, trunc)


DEFAULT_ENCODING = Encoding()


# ----------------------------------------------------------------------------------- escaping


def unescape(text: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Replace HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\ ...) with text."""
    esc = enc.escape
    if esc not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != esc:
            out.append(ch)
            i += 1
            continue
        end = text.find(esc, i + 1)
        if end == -1:  # a lone escape character: keep it literally rather than fail
            out.append(text[i:])
            break
        out.append(_escape_value(text[i + 1 : end], enc))
        i = end + 1
    return "".join(out)


def _escape_value(code: str, enc: Encoding) -> str:
    simple = {
        "F": enc.field,
        "S": enc.component,
        "T": enc.subcomponent,
        "R": enc.repetition,
        "E": enc.escape,
        ".br": "\n",
        "H": "",  # highlighting on/off: no meaning in plain text
        "N": "",
    }
    if code in simple:
        return simple[code]
    if code == "P" and enc.truncation:
        return enc.truncation
    if code[:1] == "X" and len(code) % 2 == 1:
        try:
            raw = bytes.fromhex(code[1:])
        except ValueError:
            raw = None
        if raw is not None:
            # \XC3A9\ is UTF-8 from most senders; a lone high byte (\XE9\) is latin-1.
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
    if code.startswith((".sp", ".in", ".ti", ".ce", ".fi", ".nf", ".sk")):
        return "\n" if code.startswith(".sp") else ""
    # Unknown sequence (Z..., C..., M...): keep it as sent so nothing is silently lost.
    return enc.escape + code + enc.escape


def escape(text: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Escape text for use as one HL7 value; line breaks become \\.br\\."""
    if not text:
        return text
    specials, needs_escaping = _escapes(enc)
    if not needs_escaping(text):
        return text
    e = enc.escape
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for ch in text:
        if ch in specials:
            out.append(specials[ch])
        elif ch == "\n":
            out.append(f"{e}.br{e}")
        else:
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=64)
def _escapes(enc: Encoding) -> tuple[dict[str, str], Callable[[str], object]]:
    """What `escape` replaces under ``enc``, and a search for any of it (or a line break): most
    values have none, and every value written is checked."""
    e = enc.escape
    specials = {
        e: f"{e}E{e}",
        enc.field: f"{e}F{e}",
        enc.component: f"{e}S{e}",
        enc.subcomponent: f"{e}T{e}",
        enc.repetition: f"{e}R{e}",
    }
    if enc.truncation:
        specials[enc.truncation] = f"{e}P{e}"
    return specials, re.compile("[" + re.escape("".join(specials)) + "\r\n]").search


# ------------------------------------------------------------------------------------ reading


class Field:
    """One repetition of a field: components and subcomponents split on demand."""

    __slots__ = ("raw", "enc")

    def __init__(self, raw: str, enc: Encoding) -> None:
        self.raw = raw
        self.enc = enc

    def __repr__(self) -> str:
        return f"Field({self.raw!r})"

    def __bool__(self) -> bool:
        return bool(self.raw)

    @property
    def value(self) -> str:
        """The whole repetition unescaped (components joined as sent)."""
        return unescape(self.raw, self.enc)

    def components(self) -> list[str]:
        return self.raw.split(self.enc.component)

    def component(self, n: int, sub: int | None = None) -> str:
        """Component ``n`` (1-based), optionally subcomponent ``sub``, unescaped; '' if absent."""
        parts = self.raw.split(self.enc.component)
        if n < 1 or n > len(parts):
            return ""
        value = parts[n - 1]
        if sub is not None:
            subs = value.split(self.enc.subcomponent)
            value = subs[sub - 1] if 1 <= sub <= len(subs) else ""
        elif self.enc.subcomponent in value:
            # Asking for a whole component gives its first subcomponent, as HL7 prescribes.
            value = value.split(self.enc.subcomponent, 1)[0]
        return unescape(value, self.enc)

    def __getitem__(self, n: int) -> str:
        return self.component(n)

    def subcomponents(self, n: int) -> list[str]:
        parts = self.raw.split(self.enc.component)
        if n < 1 or n > len(parts):
            return []
        return [unescape(s, self.enc) for s in parts[n - 1].split(self.enc.subcomponent)]


class Segment:
    """One segment; ``seg[n]`` is the raw text of field n, ``seg.get(n)`` its first value."""

    __slots__ = ("fields", "enc", "index")

    def __init__(self, fields: list[str], enc: Encoding, index: int) -> None:
        self.fields = fields
        self.enc = enc
        self.index = index  # 1-based position in the message

    @property
    def name(self) -> str:
        return self.fields[0]

    def __repr__(self) -> str:
        return f"Segment({self.name}, {len(self.fields) - 1} fields)"

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, n: int) -> str:
        return self.fields[n] if 0 <= n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[Field]:
        """All repetitions of field n (an empty list when the field is empty)."""
        raw = self[n]
        if not raw:
            return []
        if self.name == "MSH" and n in (1, 2):
            return [Field(raw, _LITERAL)]
        return [Field(r, self.enc) for r in raw.split(self.enc.repetition)]

    def field(self, n: int, rep: int = 1) -> Field:
        reps = self.repetitions(n)
        return reps[rep - 1] if 1 <= rep <= len(reps) else Field("", self.enc)

    def get(self, n: int, comp: int | None = None, sub: int | None = None, rep: int = 1) -> str:
        """Unescaped value of field n (repetition ``rep``), component and subcomponent optional."""
        if self.name == "MSH" and n in (1, 2):
            return self[n]
        f = self.field(n, rep)
        if comp is None:
            return (
                f.component(1)
                if (self.enc.component in f.raw)
                else unescape(
                    f.raw.split(self.enc.subcomponent, 1)[0]
                    if self.enc.subcomponent in f.raw
                    else f.raw,
                    self.enc,
                )
            )
        return f.component(comp, sub)

    def encode(self) -> str:
        if self.name == "MSH":
            return self.fields[0] + self.fields[1] + self.enc.field.join(self.fields[2:])
        return self.enc.field.join(self.fields)


# MSH-1 and MSH-2 are literal: never split them on the separators they define.
_LITERAL = Encoding("\x00", "\x01", "\x02", "\x03", "\x04")


@dataclass(frozen=True, slots=True)
class Path:
    """A v2 location: ``PID-3(2).1.2`` = PID, field 3, repetition 2, component 1, subcomponent 2.

    ``OBX(3)-5`` selects the third OBX segment. Omitted parts default to the first occurrence or
    repetition and to the whole field or component.
    """

    segment: str
    field: int
    occurrence: int = 1
    repetition: int = 1
    component: int | None = None
    subcomponent: int | None = None

    _RE = re.compile(
        r"^(?P<seg>[A-Z][A-Z0-9]{2})(?:\((?P<occ>\d+)\))?"
        r"(?:-(?P<field>\d+)(?:\((?P<rep>\d+|\*)\))?(?:\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?)?)$"
    )

    @classmethod
    def parse(cls, text: str) -> Path:
        m = cls._RE.match(text.strip())
        if not m or m["field"] is None:
            raise ValueError(
                f"{text!r} is not an HL7 v2 path; expected e.g. PID-3, PID-3(2).1, OBX(2)-5.1.2"
            )
        numbers = [int(x) for x in (m["occ"] or "1", m["field"], m["rep"] or "1") if x != "*"]
        if min(numbers) < 1 or any(int(x) < 1 for x in (m["comp"], m["sub"]) if x):
            raise ValueError(f"{text!r}: positions are 1-based")
        return cls(
            m["seg"],
            int(m["field"]),
            int(m["occ"] or 1),
            int(m["rep"] or 1) if m["rep"] != "*" else 0,
            int(m["comp"]) if m["comp"] else None,
            int(m["sub"]) if m["sub"] else None,
        )

    def __str__(self) -> str:
        s = self.segment + (f"({self.occurrence})" if self.occurrence != 1 else "")
        s += f"-{self.field}" + (f"({self.repetition})" if self.repetition != 1 else "")
        if self.component is not None:
            s += f".{self.component}"
            if self.subcomponent is not None:
                s += f".{self.subcomponent}"
        return s


# Field rules ask for the same few paths millions of times: parse each text once.
_path = lru_cache(maxsize=4096)(Path.parse)


class Message:
    """A parsed v2 message: segments in order, encoding characters and the decoded text."""

    __slots__ = ("segments", "enc", "charset", "_by_name")

    def __init__(self, segments: list[Segment], enc: Encoding, charset: str) -> None:
        self.segments = segments
        self.enc = enc
        self.charset = charset
        by_name: dict[str, list[Segment]] = {}
        for seg in segments:
            by_name.setdefault(seg.name, []).append(seg)
        self._by_name = by_name

    def __repr__(self) -> str:
        return f"Message({self.message_type}, {self.control_id!r}, {len(self.segments)} segments)"

    # --- navigation
    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return self._by_name.get(name, [])

    def first(self, name: str) -> Segment | None:
        found = self._by_name.get(name)
        return found[0] if found else None

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def get(self, path: str | Path) -> str:
        """The unescaped value at ``path`` ('' when absent)."""
        p = _path(path) if isinstance(path, str) else path
        segs = self.all(p.segment)
        if p.occurrence > len(segs):
            return ""
        seg = segs[p.occurrence - 1]
        if p.component is None:
            return seg.get(p.field, rep=p.repetition or 1)
        return seg.get(p.field, p.component, p.subcomponent, rep=p.repetition or 1)

    def get_all(self, path: str | Path) -> list[str]:
        """Every repetition's value at ``path`` (``PID-3(*).1``), or the one repetition it names."""
        p = _path(path) if isinstance(path, str) else path
        segs = self.all(p.segment)
        if p.occurrence > len(segs):
            return []
        seg = segs[p.occurrence - 1]
        count = max(len(seg.repetitions(p.field)), 1)
        reps = range(1, count + 1) if p.repetition == 0 else [p.repetition]
        if p.component is None:
            return [seg.get(p.field, rep=r) for r in reps if r <= count]
        return [seg.get(p.field, p.component, p.subcomponent, rep=r) for r in reps if r <= count]

    # --- header shortcuts
    @property
    def version(self) -> str:
        return self.msh.get(12)

    @property
    def message_code(self) -> str:
        return self.msh.get(9, 1)

    @property
    def trigger_event(self) -> str:
        return self.msh.get(9, 2)

    @property
    def message_type(self) -> str:
        """``ADT^A01`` style: code and trigger joined with a caret whatever the encoding."""
        code, event = self.message_code, self.trigger_event
        return f"{code}^{event}" if event else code

    @property
    def control_id(self) -> str:
        return self.msh.get(10)

    @property
    def sending_application(self) -> str:
        return self.msh.get(3)

    @property
    def sending_facility(self) -> str:
        return self.msh.get(4)

    def encode(self, segment_terminator: str = "\r") -> str:
        return segment_terminator.join(s.encode() for s in self.segments) + segment_terminator


def _latin1_for_invalid(err: UnicodeError) -> tuple[str, int]:
    # Each byte UTF-8 cannot read is taken as latin-1; the valid UTF-8 around it stays UTF-8.
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return err.object[err.start : err.end].decode("latin-1"), err.end


codecs.register_error("hl7-latin-1", _latin1_for_invalid)


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode raw message bytes; returns (text, charset name).

    UTF-8 when the bytes are valid UTF-8 (most traffic, whatever MSH-18 says: several senders
    declare 8859/1 and send UTF-8); else the MSH-18 charset; else UTF-8 with every byte it cannot
    read taken as latin-1 (``MIXED_CHARSET``), or plain latin-1 when there is no UTF-8 at all.
    Never raises. A UTF-16 message (byte order mark, or "MSH" with NULs) is read as UTF-16, and
    7-bit ISO 2022 text declared in MSH-18 as its charset.
    """
    if data[:3] == codecs.BOM_UTF8:
        data = data[3:]
    elif data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or data[:6] in (
        b"M\x00S\x00H\x00",
        b"\x00M\x00S\x00H",
    ):
        codec = (
            "utf-16"
            if data[:1] in (b"\xff", b"\xfe")
            else ("utf-16-le" if data[:1] == b"M" else "utf-16-be")
        )
        try:
            return data.decode(codec), "utf-16"
        except UnicodeDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        if "\x1b" in text:  # ISO 2022 escapes are valid UTF-8 bytes: honour MSH-18 for them
            declared = _declared_charset(data)
            if declared and declared.startswith("iso2022"):
                try:
                    return data.decode(declared), declared
                except UnicodeDecodeError:
                    pass
        return text, "utf-8"
    declared = _declared_charset(data)
    if declared and declared != "utf-8":
        try:
            return data.decode(declared), declared
        except (UnicodeDecodeError, LookupError):
            pass
    mixed = data.decode("utf-8", "hl7-latin-1")
    latin = data.decode("latin-1")
    return (latin, "latin-1") if mixed == latin else (mixed, MIXED_CHARSET)


def _declared_charset(data: bytes) -> str | None:
    start = data.find(b"MSH")
    if start == -1 or start > 64 or len(data) < start + 8:
        return None
    head = data[start : start + 4096].decode("latin-1")
    first = split_segments(head, head[3])[0]
    fields = first.split(first[3])
    if len(fields) <= 17:
        return None
    rep = fields[1][1:2] if len(fields[1]) > 1 else "~"
    name = fields[17].split(rep)[0].strip().upper() if rep else fields[17].strip().upper()
    return CHARSETS.get(name)


def starts_segment(line: str, field_sep: str) -> bool:
    """True when ``line`` begins with a segment name followed by the field separator (or ends)."""
    return (len(line) == 3 or line[3:4] == field_sep) and bool(_SEGMENT_NAME.match(line[:3]))


def split_segments(text: str, field_sep: str = "|") -> list[str]:
    """Split message text into segment lines on ``\r``, ``\n`` or ``\r\n`` (blank lines kept).

    A message that uses carriage returns may still carry a bare line feed inside a field (report
    text pasted in): a line feed counts as a separator only where a segment name follows it;
    otherwise it stays in the field as data. With line feeds alone, every line feed separates.
    """
    if "\n" not in text:
        return text.split("\r")
    if "\r" not in text:
        return text.split("\n")
    text = text.replace("\r\n", "\r")
    if "\n" not in text:
        return text.split("\r")
    lines: list[str] = []
    for chunk in text.split("\r"):
        if "\n" not in chunk:
            lines.append(chunk)
            continue
        pieces = chunk.split("\n")
        current = pieces[0]
        for piece in pieces[1:]:
            if not piece.strip(" \t\x00") or starts_segment(piece, field_sep):
                lines.append(current)
                current = piece
            else:
                current += "\n" + piece
        lines.append(current)
    return lines


def parse(data: bytes | str) -> Message:
    """Read one HL7 v2 message. Raises HL7Error naming the segment and field it cannot read."""
    if isinstance(data, str):
        text, charset = data, "utf-8"
    elif isinstance(data, (bytes, bytearray, memoryview)):
        text, charset = decode_bytes(bytes(data))
    else:
        raise TypeError(f"parse() takes bytes or str, not {type(data).__name__}")
    text = text.strip(_AROUND)
    if not text:
        raise HL7Error("the message is empty")
    if not text.startswith("MSH"):
        raise _not_msh(text)
    if len(text) < 8:
        raise HL7Error("the MSH segment is truncated", segment_index=1, segment="MSH")
    field_sep = text[3]
    if field_sep.isalnum() or field_sep in " \t\r\n":
        raise HL7Error(
            f"MSH-1 field separator {field_sep!r} is not a valid separator",
            segment_index=1,
            segment="MSH",
            field=1,
        )
    lines = split_segments(text, field_sep)
    msh_fields = lines[0].rstrip(" \t\x00").split(field_sep)
    if len(msh_fields) < 2:
        raise HL7Error(
            "the MSH segment ends before MSH-2 (encoding characters)",
            segment_index=1,
            segment="MSH",
            field=2,
        )
    enc = Encoding.from_msh(field_sep, msh_fields[1])
    segments: list[Segment] = [Segment(["MSH", field_sep, *msh_fields[1:]], enc, 1)]
    match_name = _SEGMENT_NAME.match
    for raw in lines[1:]:
        if not raw:
            continue
        if raw[-1] in " \t\x00" or raw[0] in " \t\x00":
            raw = raw.strip(" \t\x00")  # spaces after the last field are a common quirk
            if not raw:
                continue
        fields = raw.split(field_sep)
        name = fields[0]
        if not match_name(name) or name in BATCH_SEGMENTS or name == "MSH":
            raise _bad_segment(name, len(segments) + 1)
        segments.append(Segment(fields, enc, len(segments) + 1))
    if len(segments) == 1:
        _reject_glued_segments(msh_fields, field_sep)
    message = Message(segments, enc, charset)
    if not message.message_code:
        raise HL7Error("MSH-9 (message type) is empty", segment_index=1, segment="MSH", field=9)
    return message


def _not_msh(text: str) -> HL7Error:
    head = text[:3]
    if head in ("FHS", "BHS"):
        return HL7Error(
            f"this is a batch file ({head} header), not one message: split it with split_batch",
            segment_index=1,
            segment=head,
        )
    at = text.find("MSH", 0, 64)
    if at > 0 and not starts_segment(text, text[3:4]) and text[at + 3 : at + 4] in "|^~\\&#!@$%":
        return HL7Error(
            f"text {text[:at]!r} precedes MSH (a framing marker or junk left by the sender or "
            "transport); strip it before parsing",
            segment_index=1,
        )
    if _SEGMENT_NAME.match(head):
        return HL7Error(
            f"a message must start with an MSH segment, found {head}", segment_index=1, segment=head
        )
    return HL7Error(
        f"a message must start with an MSH segment, found {text[:12]!r}", segment_index=1
    )


def _bad_segment(name: str, index: int) -> HL7Error:
    if name == "MSH":
        return HL7Error(
            "a second MSH segment: send one message per frame, or split batches with split_batch",
            segment_index=index,
            segment="MSH",
        )
    if name in BATCH_SEGMENTS:
        return HL7Error(
            f"batch segment {name} inside a message: split batch files with split_batch",
            segment_index=index,
            segment=name,
        )
    return HL7Error(
        f"segment name {name[:12]!r} is not three upper-case letters or digits",
        segment_index=index,
    )


_GLUED = re.compile(r"[ \t]([A-Z][A-Z0-9]{2})(?=(.))")


def _reject_glued_segments(msh_fields: list[str], field_sep: str) -> None:
    """A message that is one MSH line but hides ' EVN|' or ' PID|' inside: segments were joined
    with spaces (a copy-paste or a logger flattening line breaks). Reading it as MSH alone would
    drop the whole body silently, so say what happened instead."""
    for number, value in enumerate(msh_fields[2:], start=3):
        for m in _GLUED.finditer(value + field_sep):
            name = m.group(1)
            if m.group(2) == field_sep and (name in _KNOWN_SEGMENTS or name[0] == "Z"):
                raise HL7Error(
                    f"segments are separated by spaces, not carriage returns: {name} "
                    f"starts inside MSH-{number}",
                    segment_index=1,
                    segment="MSH",
                    field=number,
                )


# ------------------------------------------------------------------------------------ writing


def build_segment(
    name: str, values: dict[int, object] | list[object], enc: Encoding = DEFAULT_ENCODING
) -> str:
    """Build a segment from field values (already-encoded strings are passed as ``Raw``)."""
    items = values.items() if isinstance(values, dict) else enumerate(values, start=1)
    fields: dict[int, str] = {n: encode_value(v, enc) for n, v in items}
    fields = {n: v for n, v in fields.items() if v}
    if not fields:
        return name
    top = max(fields)
    return enc.field.join([name, *(fields.get(n, "") for n in range(1, top + 1))])


class Raw(str):
    """A value that is already in ER7 form and must not be escaped again."""


def encode_value(value: object, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Encode a field value: str (escaped), Raw, list of components, or tuple of repetitions."""
    if value is None:
        return ""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        return escape(value, enc)
    if isinstance(value, tuple):  # repetitions
        return enc.repetition.join(encode_value(v, enc) for v in value)
    if isinstance(value, list):  # components (a nested list = subcomponents)
        parts = []
        for c in value:
            if isinstance(c, list):
                parts.append(enc.subcomponent.join(escape(str(s or ""), enc) for s in c))
            else:
                parts.append(encode_value(c, enc))
        return enc.component.join(parts).rstrip(enc.component)
    return escape(str(value), enc)
