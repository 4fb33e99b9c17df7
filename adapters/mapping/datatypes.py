"""v2 datatypes to FHIR datatypes (the IG's datatype maps): DTM/TS, CX, XPN, XAD, XTN, CWE/CE,
HD, EI, XCN, XON, PL, NM, SN, CQ.

Each map takes one field repetition (`Comps`, split once) and returns a plain JSON dict, or None
when the repetition carries nothing. A value the standard does not allow raises `BadValue`; the
segment map turns that into a `ConversionIssue` naming the field, so a datatype never needs to
know where it sits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache

from adapters.codecs import hl7v2
from adapters.codecs.exact_json import exact_number
from adapters.mapping import codesystems as cs


class BadValue(ValueError):
    """A v2 value that breaks its datatype's rules. ``component`` is 1-based when known."""

    def __init__(self, reason: str, *, component: int | None = None) -> None:
        super().__init__(reason)
        self.component = component


NULL = '""'  # v2 "explicit null": the sender deletes the value. For a new resource it means absent.


def clean(text: str) -> str:
    text = text.strip()
    return "" if text == NULL else text


class Comps:
    """One field repetition split into components once; values are unescaped and trimmed."""

    __slots__ = ("parts", "enc", "source")

    def __init__(self, raw: str, enc: hl7v2.Encoding) -> None:
        self.parts = raw.split(enc.component) if raw else []
        self.enc = enc
        self.source = raw  # the repetition as sent: a key for per-message memos

    @classmethod
    def of(cls, field: hl7v2.Field) -> Comps:
        return cls(field.raw, field.enc)

    def __bool__(self) -> bool:
        for p in self.parts:
            if p and p != NULL:
                p = p.strip()
                if p and p != NULL:
                    return True
        return False

    def raw(self, n: int) -> str:
        return self.parts[n - 1] if 0 < n <= len(self.parts) else ""

    def c(self, n: int) -> str:
        """Component n (its first subcomponent when it has several)."""
        if n > len(self.parts):
            return ""
        value = self.parts[n - 1]
        if not value:
            return ""
        enc = self.enc
        if enc.subcomponent in value:
            value = value.split(enc.subcomponent, 1)[0]
        if enc.escape in value:
            value = hl7v2.unescape(value, enc)
        value = value.strip()
        return "" if value == NULL else value

    def s(self, n: int, sub: int) -> str:
        """Subcomponent ``sub`` of component n."""
        value = self.raw(n)
        if not value:
            return ""
        subs = value.split(self.enc.subcomponent)
        value = subs[sub - 1] if sub <= len(subs) else ""
        if self.enc.escape in value:
            value = hl7v2.unescape(value, self.enc)
        return clean(value)

    def sub(self, n: int) -> Comps:
        """Component n as its own Comps over subcomponents (a CWE inside a field, an HD in CX-4)."""
        inner = Comps("", self.enc)
        value = self.raw(n)
        inner.parts = value.split(self.enc.subcomponent) if value else []
        inner.source = value
        return inner

    def text(self) -> str:
        """The whole repetition as text, unescaped (used for ST/TX/FT values)."""
        return hl7v2.unescape(self.enc.component.join(self.parts), self.enc)


# ------------------------------------------------------------------------------ date / time

_DTM = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<tz>[+-]\d{4})?$"
)
DTM_FORMAT = "YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]"


@dataclass(frozen=True, slots=True)
class Dtm:
    """A parsed DTM at the precision the sender gave."""

    year: int
    month: int | None = None
    day: int | None = None
    hour: int | None = None
    minute: int | None = None
    second: int | None = None
    fraction: str = ""
    tz: str | None = None  # "+HH:MM"

    @property
    def has_time(self) -> bool:
        return self.hour is not None

    def date_text(self) -> str:
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
            if self.day is not None:
                text += f"-{self.day:02d}"
        return text

    def datetime_text(self, default_tz: str) -> str:
        """FHIR dateTime. A time needs seconds and a zone in FHIR: missing minutes and seconds
        are zero (the sender's precision was coarser, not different), a missing zone is
        ``default_tz`` (see `Context.default_tz`)."""
        if not self.has_time:
            return self.date_text()
        frac = f".{self.fraction}" if self.fraction else ""
        return (
            f"{self.date_text()}T{self.hour:02d}:{self.minute or 0:02d}:{self.second or 0:02d}"
            f"{frac}{self.tz or default_tz}"
        )

    def instant_text(self, default_tz: str) -> str:
        """FHIR instant: always to the second with a zone; a date-only value becomes midnight."""
        if self.has_time:
            return self.datetime_text(default_tz)
        return (
            f"{self.year:04d}-{self.month or 1:02d}-{self.day or 1:02d}T00:00:00"
            f"{self.tz or default_tz}"
        )


@lru_cache(maxsize=8192)
def parse_dtm(text: str) -> Dtm | None:
    """Read a DTM (or the first component of a TS); None when empty; BadValue when malformed.
    Cached: a pure function of the text, and the same timestamps recur in every OBX."""
    text = clean(text)
    if not text:
        return None
    m = _DTM.match(text)
    if not m:
        raise BadValue(f"not an HL7 date/time; expected {DTM_FORMAT}")
    if m["mi"] is not None and m["h"] is None:  # pragma: no cover - regex makes it impossible
        raise BadValue("minutes without an hour")
    y = int(m["y"])
    mo = int(m["mo"]) if m["mo"] else None
    d = int(m["d"]) if m["d"] else None
    h = int(m["h"]) if m["h"] else None
    mi = int(m["mi"]) if m["mi"] else None
    s = int(m["s"]) if m["s"] else None
    if m["f"] and s is None:
        raise BadValue("fractional seconds without seconds")
    if mo is not None and not 1 <= mo <= 12:
        raise BadValue(f"month {mo:02d} is out of range")
    if d is not None:
        try:
            date(y, mo or 1, d)
        except ValueError:
            raise BadValue(f"day {d:02d} does not exist in {y:04d}-{mo:02d}")
    if h is not None and h > 23:
        raise BadValue(f"hour {h:02d} is out of range")
    if mi is not None and mi > 59:
        raise BadValue(f"minute {mi:02d} is out of range")
    if s is not None and s > 59:
        raise BadValue(f"second {s:02d} is out of range")
    tz = None
    if m["tz"]:
        raw = m["tz"]
        hh, mm = int(raw[1:3]), int(raw[3:5])
        if hh > 14 or mm > 59:
            raise BadValue(f"time zone {raw} is out of range")
        tz = f"{raw[0]}{raw[1:3]}:{raw[3:5]}"
    return Dtm(y, mo, d, h, mi, s, m["f"] or "", tz)


def tz_offset_text(text: str) -> str | None:
    """The zone of a DTM as "+HH:MM", or None."""
    try:
        parsed = parse_dtm(text)
    except BadValue:
        return None
    return parsed.tz if parsed else None


# --------------------------------------------------------------------------------- numbers

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")


def decimal(text: str) -> int | float | Decimal | None:
    """NM to a JSON number. v2 allows '+', leading zeros and '.5'; FHIR's decimal does not, so
    the sign and zeros are normalised, but the written precision is kept: ``1.50`` becomes a
    Decimal that exact_json writes as ``1.50`` (FHIR decimals are exact)."""
    text = clean(text)
    if not text:
        return None
    if not _NUMBER.match(text):
        raise BadValue("not a number")
    sign = "-" if text.startswith("-") else ""
    whole, dot, fraction = text.lstrip("+-").partition(".")
    whole = whole.lstrip("0") or "0"
    if not fraction:
        return int(sign + whole)
    return exact_number(f"{sign}{whole}.{fraction}")


# ------------------------------------------------------------------------------ identifiers


def hd_system(hd: Comps) -> str | None:
    """HD held as subcomponents (CX-4, XCN-9) or as components of its own field (MSH-4)."""
    return cs.hd_system(hd.c(1), hd.c(2), hd.c(3))


def identifier_type(code: str, table: str = "0203") -> dict:
    return {"coding": [cs.v2_coding(table, code)]}


def cx(field: Comps, default_system: str | None = None) -> dict | None:
    """CX -> Identifier (value, system from CX-4, type from CX-5, period from CX-7/8)."""
    value = field.c(1)
    if not value:
        return None
    ident: dict = {}
    authority = field.sub(4)
    system = hd_system(authority) or default_system
    type_code = field.c(5)
    if type_code:
        ident["type"] = identifier_type(type_code)
    if system:
        ident["system"] = system
    ident["value"] = value
    period = _period(field.c(7), field.c(8))
    if period:
        ident["period"] = period
    if authority.c(1):
        ident["assigner"] = {"display": authority.c(1)}
    return ident


def ei(field: Comps, type_code: str | None = None) -> dict | None:
    """EI (entity id ^ namespace ^ universal id ^ type) -> Identifier."""
    value = field.c(1)
    if not value:
        return None
    ident: dict = {}
    if type_code:
        ident["type"] = identifier_type(type_code)
    system = cs.hd_system(field.c(2), field.c(3), field.c(4))
    if system:
        ident["system"] = system
    ident["value"] = value
    return ident


def _period(start: str, end: str) -> dict | None:
    """A period from two DTMs; an unreadable bound is dropped (it is informative only)."""
    period = {}
    for key, text in (("start", start), ("end", end)):
        try:
            parsed = parse_dtm(text)
        except BadValue:
            continue
        if parsed:  # a bound without a zone keeps only its date: no zone is invented here
            period[key] = parsed.datetime_text("") if parsed.tz else parsed.date_text()
    if "start" in period and "end" in period and period["end"] < period["start"]:
        del period["end"]
    return period or None


# ------------------------------------------------------------------------------------ names


def xpn(field: Comps) -> dict | None:
    """XPN -> HumanName: family (FN.1), given (2, 3), prefix (5), suffix (4, 6), use (7)."""
    family = field.c(1)
    given = [g for g in (field.c(2), field.c(3)) if g]
    suffix = [s for s in (field.c(4), field.c(6)) if s]
    prefix = field.c(5)
    if not (family or given or prefix or suffix):
        return None
    name = _human_name(cs.NAME_USE.get(field.c(7)), family, given, prefix, suffix)
    period = _period(field.c(12), field.c(13)) or _period(field.s(10, 1), field.s(10, 2))
    if period:
        name["period"] = period
    return name


def called_by(field: Comps) -> dict | None:
    """XPN-15 (called by, v2.7+) -> a HumanName of use nickname: the name a person goes by."""
    nickname = field.c(15)
    return {"use": "nickname", "given": [nickname]} if nickname else None


def xcn_name(field: Comps) -> dict | None:
    """The name part of an XCN (family 2, given 3/4, suffix 5, prefix 6, degree 7)."""
    family = field.c(2)
    given = [g for g in (field.c(3), field.c(4)) if g]
    suffix = [s for s in (field.c(5), field.c(7)) if s]
    prefix = field.c(6)
    if not (family or given):
        return None
    return _human_name(cs.NAME_USE.get(field.c(10)), family, given, prefix, suffix)


def _human_name(use: str | None, family: str, given: list, prefix: str, suffix: list) -> dict:
    """A HumanName with only the parts that have a value, in FHIR's element order."""
    parts = {
        "use": use,
        "family": family,
        "given": given,
        "prefix": [prefix] if prefix else None,
        "suffix": suffix,
    }
    return {key: value for key, value in parts.items() if value}


def xcn_identifier(field: Comps) -> dict | None:
    value = field.c(1)
    if not value:
        return None
    ident: dict = {}
    type_code = field.c(13)
    if type_code:
        ident["type"] = identifier_type(type_code)
    system = hd_system(field.sub(9))
    if system:
        ident["system"] = system
    ident["value"] = value
    return ident


# -------------------------------------------------------------------------------- addresses


def xad(field: Comps) -> dict | None:
    """XAD -> Address: lines (1, 2), city 3, state 4, postal code 5, country 6, use/type 7,
    district 9, period 13/14 (or 12 as a range in older versions)."""
    # SAD: street or mailing address 1, street name 2, dwelling number 3, each its own line
    # unless one already holds the other ("1000&Hospital Lane" -> "1000", "Hospital Lane").
    street = [field.c(1)]
    street += [p for p in (field.s(1, 2), field.s(1, 3)) if p and p not in street[0]]
    # XAD-19 addressee: the "c/o" line a postal address carries (v2.7+)
    lines = [x for x in (*street, field.c(2), field.c(19)) if x]
    city, state, postal, country = field.c(3), field.c(4), field.c(5), field.c(6)
    district = field.c(9)
    if not (lines or city or state or postal or country or district):
        return None
    address: dict = {}
    use, kind = cs.ADDRESS_USE.get(field.c(7), (None, None))
    if use:
        address["use"] = use
    if kind:
        address["type"] = kind
    if lines:
        address["line"] = lines
    if city:
        address["city"] = city
    if district:
        address["district"] = district
    if state:
        address["state"] = state
    if postal:
        address["postalCode"] = postal
    if country:
        address["country"] = country
    period = _period(field.c(13), field.c(14)) or _period(field.s(12, 1), field.s(12, 2))
    if period:
        address["period"] = period
    return address


# --------------------------------------------------------------------------------- telecom


def xtn(field: Comps, default_use: str | None = None) -> dict | None:
    """XTN -> ContactPoint. Email from XTN-4; a number from XTN-12 (unformatted, which the IG
    prefers), else XTN-1, else composed from country 5, area 6, local 7 and extension 8."""
    equipment = field.c(3)
    email = field.c(4)
    if email and equipment in ("Internet", "X.400", ""):
        value, system = email, "email"
    else:
        value = field.c(12) or field.c(1)
        if not value:
            local = field.c(7)
            if local:
                cc, area, ext = field.c(5), field.c(6), field.c(8)
                value = " ".join(
                    p for p in (f"+{cc}" if cc else "", f"({area})" if area else "", local) if p
                )
                if ext:
                    value += f" ext. {ext}"
        if not value and email:
            value, system = email, "email"
        else:
            system = cs.TELECOM_SYSTEM.get(equipment, "phone" if value else None)
    if not value:
        return None
    point: dict = {"system": system} if system else {}
    point["value"] = value
    use = cs.TELECOM_USE.get(field.c(2), default_use)
    if field.c(3) == "CP" or field.c(2) == "PRS":
        use = "mobile"
    if use:
        point["use"] = use
    rank = field.c(18)
    if rank.isdigit() and int(rank) > 0:
        point["rank"] = int(rank)
    period = _period(field.c(13), field.c(14))
    if period:
        point["period"] = period
    return point


# ------------------------------------------------------------------------------------ codes


def coding(code: str, display: str, system_name: str, version: str = "", default=None) -> dict:
    result: dict = {}
    system = cs.coding_system(system_name) if system_name else default
    if system:
        result["system"] = system
    if version:
        result["version"] = version
    if code:
        result["code"] = code
    if display:
        result["display"] = display
    return result


def cwe(field: Comps, default_system: str | None = None) -> dict | None:
    """CWE/CE/CNE -> CodeableConcept: the primary triplet (1-3), the alternate (4-6), text from
    CWE-9 (original text) or the display when no code is sent. ``default_system`` applies when
    the sender gives a code but no system (the field's v2 table, e.g. v2-0074 for OBR-24)."""
    c, n = field.c, len(field.parts)
    if n == 0:
        return None
    code, display, system = c(1), c(2), c(3)
    codings = []
    if code:
        codings.append(coding(code, display, system, c(7) if n > 6 else "", default_system))
    alt_display = original = ""
    if n > 3:  # most senders stop at the first triplet
        alt_code, alt_display, alt_system = c(4), c(5), c(6)
        original = c(9)
        if alt_code:
            codings.append(coding(alt_code, alt_display, alt_system, c(8), default_system))
    text = original or ("" if codings else display or alt_display)
    if not codings and not text:
        return None
    concept: dict = {}
    if codings:
        concept["coding"] = codings
    if text:
        concept["text"] = text
    return concept


def table_concept(code: str, table: str, display: str | None = None) -> dict:
    return {"coding": [cs.v2_coding(table, code, display)]}


# ----------------------------------------------------------------------------- quantities


def unit_fields(units: Comps | dict | None) -> dict:
    """CWE units (OBX-6) -> the unit/system/code of a Quantity (UCUM when the units say so).
    Computed once per OBX and shared by its value and reference range."""
    if units is None or isinstance(units, dict):
        return units or {}
    if not units:
        return {}
    code, text, system = units.c(1), units.c(2), units.c(3)
    out: dict = {"unit": text or code} if (text or code) else {}
    uri = cs.coding_system(system) if system else None
    if uri and code:
        out["system"] = uri
        out["code"] = code
    return out


def quantity(value: int | float, units: Comps | dict | None) -> dict:
    """A Quantity from a number and units (a CWE, or `unit_fields` of one)."""
    q: dict = {"value": value}
    fields = unit_fields(units)
    if fields:
        q.update(fields)
    return q


_RANGE = re.compile(r"^\s*(?P<lo>[+-]?[\d.]+)?\s*(?:-|to|–|&)\s*(?P<hi>[+-]?[\d.]+)?\s*$")
_BOUND = re.compile(r"^\s*(?P<op><=|>=|<|>)\s*(?P<n>[+-]?[\d.]+)\s*$")


def reference_range(text: str, units: Comps | dict | None) -> dict | None:
    """OBX-7 ("3.5-5.0", "13 to 18", "<5", ">=60") -> Observation.referenceRange; free text
    that is not a range goes to referenceRange.text."""
    text = clean(text)
    if not text:
        return None
    low = high = None
    m = _BOUND.match(text)
    units = unit_fields(units)
    try:
        if m:
            number = decimal(m["n"])
            if m["op"].startswith("<"):
                high = number
            else:
                low = number
        else:
            m = _RANGE.match(text)
            if m and (m["lo"] or m["hi"]):
                low = decimal(m["lo"]) if m["lo"] else None
                high = decimal(m["hi"]) if m["hi"] else None
    except BadValue:
        low = high = None
    result: dict = {}
    if low is not None:
        result["low"] = _simple_quantity(low, units)
    if high is not None:
        result["high"] = _simple_quantity(high, units)
    if not result:
        result["text"] = text
    return result


def _simple_quantity(value, units):
    return quantity(value, units)  # SimpleQuantity: a Quantity without comparator


def sn(field: Comps, units: Comps | dict | None) -> tuple[str, dict]:
    """SN (comparator ^ num1 ^ separator/suffix ^ num2) -> (value[x] name, value).

    ``^182`` and ``<^5`` are quantities, ``^10^-^20`` a range, ``^1^:^128`` (or ``/``) a ratio,
    ``^2^+`` a quantity with the "+" kept in the unit text as the IG suggests no better place."""
    comparator, num1, sep, num2 = field.c(1), field.c(2), field.c(3), field.c(4)
    units = unit_fields(units)
    first = decimal(num1) if num1 else None
    second = decimal(num2) if num2 else None
    if comparator and comparator not in ("<", ">", "<=", ">=", "=", "<>"):
        raise BadValue(f"SN comparator {comparator!r} is not one of < > <= >= = <>", component=1)
    if sep in ("-", "–") and (first is not None or second is not None):
        rng: dict = {}
        if first is not None:
            rng["low"] = _simple_quantity(first, units)
        if second is not None:
            rng["high"] = _simple_quantity(second, units)
        return "valueRange", rng
    if sep in (":", "/") and first is not None and second is not None:
        return "valueRatio", {
            "numerator": _simple_quantity(first, units),
            "denominator": {"value": second},
        }
    if first is None:
        raise BadValue("SN has no number in component 2", component=2)
    q = quantity(first, units)
    if comparator in ("<", ">", "<=", ">="):
        q["comparator"] = comparator
    return "valueQuantity", q
