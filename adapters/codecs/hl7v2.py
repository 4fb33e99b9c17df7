"""HL7 v2 (ER7, pipe-and-hat) codec: a tolerant reader and a writer.

The reader splits bytes on the separators the message declares and nothing more: fields stay raw
strings until something asks for them, and unescaping happens only on the value returned. That
keeps the hot path at a few microseconds per message (hl7apy's full tree costs ~12 ms), while
`Path` gives the same `PID-3(2).1` addressing that field rules and the test bench use.

Indexing follows the standard's numbering everywhere: ``segment[3]`` is PID-3, and for MSH
``segment[1]`` is the field separator and ``segment[2]`` the encoding characters, so MSH-9 is
``msh[9]`` as in every specification.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Iterator

from adapters.base import AdapterError

SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
BOM = "\ufeff"

# MSH-18 names (HL7 table 0211) -> Python codecs. Anything unknown falls back to latin-1.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/5": "iso8859-5",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "ISO IR87": "iso2022_jp",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
}


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
    def from_msh(cls, field_sep: str, msh2: str) -> Encoding:
        chars = msh2[:5]
        if not chars:
            raise HL7Error("MSH-2 (encoding characters) is empty", segment="MSH", field=2)
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
        "P": enc.truncation,
        ".br": "\n",
        "H": "",  # highlighting on/off: no meaning in plain text
        "N": "",
    }
    if code in simple:
        return simple[code]
    if code[:1] == "X" and len(code) % 2 == 1:
        try:
            return bytes.fromhex(code[1:]).decode("latin-1")
        except ValueError:
            pass
    if code.startswith((".sp", ".in", ".ti", ".ce", ".fi", ".nf", ".sk")):
        return "\n" if code.startswith(".sp") else ""
    # Unknown sequence (Z..., C..., M...): keep it as sent so nothing is silently lost.
    return enc.escape + code + enc.escape


def escape(text: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Escape text for use as one HL7 value; line breaks become \\.br\\."""
    if not text:
        return text
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
    if not any(c in text for c in specials) and "\r" not in text and "\n" not in text:
        return text
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
            return f.component(1) if (self.enc.component in f.raw) else unescape(
                f.raw.split(self.enc.subcomponent, 1)[0] if self.enc.subcomponent in f.raw else f.raw,
                self.enc,
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
        p = Path.parse(path) if isinstance(path, str) else path
        segs = self.all(p.segment)
        if p.occurrence > len(segs):
            return ""
        seg = segs[p.occurrence - 1]
        if p.component is None:
            return seg.get(p.field, rep=p.repetition or 1)
        return seg.get(p.field, p.component, p.subcomponent, rep=p.repetition or 1)

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


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode raw message bytes: UTF-8 when valid, else MSH-18's charset, else latin-1."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    declared = _declared_charset(data)
    if declared and declared != "utf-8":
        try:
            return data.decode(declared), declared
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("latin-1"), "latin-1"


def _declared_charset(data: bytes) -> str | None:
    if not data.startswith(b"MSH") or len(data) < 4:
        return None
    first = SEGMENT_SPLIT.split(data[:4096].decode("latin-1"), 1)[0]
    fields = first.split(first[3])
    if len(fields) <= 17:
        return None
    rep = fields[1][1:2] if len(fields[1]) > 1 else "~"
    name = fields[17].split(rep)[0].strip().upper() if rep else fields[17].strip().upper()
    return CHARSETS.get(name)


def parse(data: bytes | str) -> Message:
    """Read one HL7 v2 message. Raises HL7Error naming the segment and field it cannot read."""
    if isinstance(data, bytes):
        text, charset = decode_bytes(data)
    else:
        text, charset = data, "utf-8"
    text = text.lstrip(BOM).strip(" \t\r\n\x00")
    if not text:
        raise HL7Error("the message is empty")
    if not text.startswith("MSH"):
        found = text[:3] if text[:3].isalnum() else repr(text[:12])
        raise HL7Error(f"a message must start with an MSH segment, found {found}", segment_index=1)
    if len(text) < 8:
        raise HL7Error("the MSH segment is truncated", segment_index=1, segment="MSH")
    field_sep = text[3]
    if field_sep.isalnum() or field_sep in " \r\n":
        raise HL7Error(
            f"MSH-1 field separator {field_sep!r} is not a valid separator",
            segment_index=1,
            segment="MSH",
            field=1,
        )
    lines = SEGMENT_SPLIT.split(text)
    msh_fields = lines[0].split(field_sep)
    enc = Encoding.from_msh(field_sep, msh_fields[1])
    segments: list[Segment] = [Segment(["MSH", field_sep, *msh_fields[1:]], enc, 1)]
    for raw in lines[1:]:
        raw = raw.strip(" \t\x00")  # trailing spaces after the last field are a common quirk
        if not raw:
            continue
        fields = raw.split(field_sep)
        name = fields[0]
        if len(name) != 3 or not name.isalnum() or not name[0].isalpha():
            raise HL7Error(
                f"segment name {name[:12]!r} is not three letters or digits",
                segment_index=len(segments) + 1,
            )
        if name == "MSH":
            raise HL7Error(
                "a second MSH segment: send one message per frame or use a batch",
                segment_index=len(segments) + 1,
                segment="MSH",
            )
        segments.append(Segment(fields, enc, len(segments) + 1))
    message = Message(segments, enc, charset)
    if not message.message_code:
        raise HL7Error("MSH-9 (message type) is empty", segment_index=1, segment="MSH", field=9)
    return message


# ------------------------------------------------------------------------------------ writing


def build_segment(name: str, values: dict[int, object] | list[object], enc: Encoding = DEFAULT_ENCODING) -> str:
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
