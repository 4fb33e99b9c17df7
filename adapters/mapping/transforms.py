"""Value transforms for analyst field rules, and the date conversions they share with the v2 writer.

A transform is data, ``{"op": "trim"}`` or ``{"op": "lookup", "table": {...}, "miss": "keep"}``,
compiled once by `compile_transform` into a callable that maps a list of values to a list of
values. Lists, because a rule may read several sources (``concat`` joins them) or a FHIRPath that
yields several items. Empty values (None, "") never travel through the chain: every step drops
them, so "the source is absent" is simply an empty list.

Options are checked when the rule is compiled (`TransformSpecError` names the option); a value
that cannot be transformed at apply time raises `TransformFailed`, which the rule engine reports
as the sender's data problem and moves on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

Values = list[Any]


class TransformSpecError(ValueError):
    """A transform whose definition is wrong; ``option`` names the offending key, if one."""

    def __init__(self, reason: str, option: str | None = None) -> None:
        super().__init__(reason)
        self.option = option


class TransformFailed(Exception):
    """A value the transform cannot handle (the sender's data, not the rule)."""

    def __init__(self, reason: str, value: Any = None) -> None:
        super().__init__(reason)
        self.value = value


def is_empty(value: Any) -> bool:
    # '""' is HL7 v2's explicit null: for a field rule it carries no value.
    return value is None or value == "" or value == '""'


def compact(values: Values) -> Values:
    return [v for v in values if v is not None and v != "" and v != '""']


def as_text(value: Any, op: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise TransformFailed(f"{op} needs text, got {type(value).__name__}", value)


# --------------------------------------------------------------------------- the transform types

_NO_DEFAULT = object()


class Transform:
    """One compiled step. Subclasses declare their options and implement `__call__`."""

    op: ClassVar[str]
    # option name -> (accepted JSON types, required?, default)
    options: ClassVar[dict[str, tuple[tuple[type, ...], bool, Any]]] = {}

    def __init__(self, spec: Mapping[str, Any], context: Mapping[str, Any]) -> None:
        unknown = sorted(set(spec) - set(self.options) - {"op"})
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise TransformSpecError(
                f"{self.op}: unknown option {unknown[0]!r} (allowed: {allowed})", unknown[0]
            )
        self.opts: dict[str, Any] = {}
        for name, (types, required, default) in self.options.items():
            if name not in spec:
                if required:
                    raise TransformSpecError(f"{self.op}: option {name!r} is required", name)
                if default is not _NO_DEFAULT:
                    self.opts[name] = default
                continue
            value = spec[name]
            # bool is an int in Python; an index or a count must not accept true/false.
            wrong_bool = isinstance(value, bool) and bool not in types
            if types and (not isinstance(value, types) or wrong_bool):
                names = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in types)
                raise TransformSpecError(f"{self.op}: option {name!r} must be {names}", name)
            self.opts[name] = value
        self.explicit = {k: spec[k] for k in self.options if k in spec}
        self.setup(context)

    def setup(self, context: Mapping[str, Any]) -> None:
        """Validate option values together and precompute; runs once at compile time."""

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, **self.explicit}

    def __call__(self, values: Values) -> Values:
        raise NotImplementedError


_JSON_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object"}
_ANY: tuple[type, ...] = ()

TRANSFORMS: dict[str, type[Transform]] = {}


def transform(cls: type[Transform]) -> type[Transform]:
    TRANSFORMS[cls.op] = cls
    return cls


class _EachValue(Transform):
    """A transform applied to every value on its own."""

    def __call__(self, values: Values) -> Values:
        one = self.one
        return [r for r in map(one, values) if r is not None and r != "" and r != '""']

    def one(self, value: Any) -> Any:
        raise NotImplementedError


@transform
class Trim(_EachValue):
    op = "trim"
    options = {"chars": ((str,), False, None)}

    def one(self, value: Any) -> Any:
        return as_text(value, self.op).strip(self.opts["chars"])


@transform
class Upper(_EachValue):
    op = "upper"

    def one(self, value: Any) -> Any:
        return as_text(value, self.op).upper()


@transform
class Lower(_EachValue):
    op = "lower"

    def one(self, value: Any) -> Any:
        return as_text(value, self.op).lower()


@transform
class Default(Transform):
    """Supply a value when the sources gave none (also a constant for a rule without source)."""

    op = "default"
    options = {"value": (_ANY, True, None)}

    def setup(self, context: Mapping[str, Any]) -> None:
        if is_empty(self.opts["value"]):
            raise TransformSpecError("default: 'value' must not be empty", "value")

    def __call__(self, values: Values) -> Values:
        return values or [self.opts["value"]]


@transform
class Concat(Transform):
    op = "concat"
    options = {"separator": ((str,), False, "")}

    def __call__(self, values: Values) -> Values:
        if len(values) < 2:
            return values
        return compact([self.opts["separator"].join(as_text(v, self.op) for v in values)])


@transform
class Split(_EachValue):
    """Split on a literal separator and keep part ``index`` (0-based; -1 is the last part)."""

    op = "split"
    options = {"separator": ((str,), True, None), "index": ((int,), True, None)}

    def setup(self, context: Mapping[str, Any]) -> None:
        if not self.opts["separator"]:
            raise TransformSpecError("split: 'separator' must not be empty", "separator")

    def one(self, value: Any) -> Any:
        parts = as_text(value, self.op).split(self.opts["separator"])
        index = self.opts["index"]
        return parts[index] if -len(parts) <= index < len(parts) else None


_GROUP_REF = re.compile(r"\\(?:g<([^>]*)>|(\d{1,2}))")


@transform
class Replace(_EachValue):
    """Regular-expression replace (Python ``re`` syntax; ``\\1`` or ``\\g<name>`` in the result)."""

    op = "replace"
    options = {
        "pattern": ((str,), True, None),
        "replacement": ((str,), False, ""),
        "count": ((int,), False, 0),
        "ignore_case": ((bool,), False, False),
    }

    def setup(self, context: Mapping[str, Any]) -> None:
        try:
            self.regex = re.compile(
                self.opts["pattern"], re.IGNORECASE if self.opts["ignore_case"] else 0
            )
        except re.error as e:
            raise TransformSpecError(f"replace: bad regular expression: {e}", "pattern")
        if self.opts["count"] < 0:
            raise TransformSpecError("replace: 'count' must be 0 (all) or more", "count")
        # re only checks group references when it first substitutes; check them now instead.
        for name, number in _GROUP_REF.findall(self.opts["replacement"]):
            ref = name or number
            known = int(ref) <= self.regex.groups if ref.isdigit() else ref in self.regex.groupindex
            if not known:
                raise TransformSpecError(
                    f"replace: the replacement refers to group {ref!r}, which the pattern lacks",
                    "replacement",
                )

    def one(self, value: Any) -> Any:
        return self.regex.sub(
            self.opts["replacement"], as_text(value, self.op), count=self.opts["count"]
        )


LOOKUP_MISS = ("keep", "default", "empty", "error")


@transform
class Lookup(_EachValue):
    """Map codes through a table: a dict in the rule, or the name of a table given at compile.

    A miss keeps the value (``miss: keep``), uses ``default``, drops the value (``empty``) or is
    reported as the sender's data (``error``, the policy unless a default is given).
    """

    op = "lookup"
    options = {
        "table": ((dict, str), True, None),
        "default": (_ANY, False, _NO_DEFAULT),
        "miss": ((str,), False, _NO_DEFAULT),
        "ignore_case": ((bool,), False, False),
    }

    def setup(self, context: Mapping[str, Any]) -> None:
        table = self.opts["table"]
        if isinstance(table, str):
            tables = context.get("tables") or {}
            if table not in tables:
                known = ", ".join(sorted(tables)) or "none given"
                raise TransformSpecError(
                    f"lookup: no table named {table!r} (known: {known})", "table"
                )
            table = tables[table]
        if not isinstance(table, Mapping) or not all(isinstance(k, str) for k in table):
            raise TransformSpecError("lookup: 'table' must map text codes to values", "table")
        miss = self.opts.get("miss", "default" if "default" in self.opts else "error")
        if miss not in LOOKUP_MISS:
            raise TransformSpecError(
                f"lookup: 'miss' must be one of {', '.join(LOOKUP_MISS)}, not {miss!r}", "miss"
            )
        if miss == "default" and "default" not in self.opts:
            raise TransformSpecError("lookup: miss 'default' needs a 'default' value", "default")
        self.miss = miss
        fold = self.opts["ignore_case"]
        self.table = {(k.casefold() if fold else k): v for k, v in table.items()}

    def one(self, value: Any) -> Any:
        text = as_text(value, self.op)
        key = text.casefold() if self.opts["ignore_case"] else text
        if key in self.table:
            return self.table[key]
        if self.miss == "keep":
            return value
        if self.miss == "default":
            return self.opts["default"]
        if self.miss == "empty":
            return None
        raise TransformFailed(f"lookup: {text!r} is not in the table", text)


@transform
class Drop(Transform):
    """Remove the target. The rule engine handles it; as a value step it yields nothing."""

    op = "drop"

    def __call__(self, values: Values) -> Values:
        return []


@transform
class DateFormat(Transform):
    """Convert dates and times between formats, keeping the precision the value has.

    ``from``: ``v2`` (DTM/TS of any precision, optional offset), ``fhir`` (date, dateTime,
    instant) or a ``strptime`` pattern such as ``%d/%m/%Y``. ``to``: ``fhir`` (a date when the
    value has no time, else a dateTime), ``fhir-date``, ``v2`` or a ``strftime`` pattern.
    ``tz`` (``Z`` or ``+01:00``) is the offset to assume when a value has a time but no offset,
    since a FHIR dateTime with a time must carry one.
    """

    op = "date"
    options = {
        "from": ((str,), True, None),
        "to": ((str,), True, None),
        "tz": ((str,), False, None),
    }

    def setup(self, context: Mapping[str, Any]) -> None:
        self.reader = _reader(self.opts["from"])
        self.writer = _writer(self.opts["to"])
        tz = self.opts["tz"]
        if tz is not None and not _TZ_OPTION.match(tz):
            raise TransformSpecError("date: 'tz' must be Z or an offset such as +01:00", "tz")
        self.tz = None if tz is None else ("Z" if tz == "Z" else tz.replace(":", ""))

    def __call__(self, values: Values) -> Values:
        out = []
        for value in values:
            stamp = self.reader(as_text(value, self.op).strip())
            if stamp.precision >= HOUR and stamp.tz is None and self.tz is not None:
                stamp = stamp.with_tz(self.tz)
            out.append(self.writer(stamp))
        return compact(out)


_TZ_OPTION = re.compile(r"^(Z|[+-](0\d|1[0-4]):?[0-5]\d)$")


def compile_transform(spec: Any, context: Mapping[str, Any] | None = None) -> Transform:
    """Build one transform from ``{"op": name, ...}`` or the bare name for option-less ones."""
    if isinstance(spec, str):
        spec = {"op": spec}
    if not isinstance(spec, Mapping):
        raise TransformSpecError('a transform must be an object such as {"op": "trim"}')
    op = spec.get("op")
    cls = TRANSFORMS.get(op) if isinstance(op, str) else None
    if cls is None:
        known = ", ".join(sorted(TRANSFORMS))
        raise TransformSpecError(f"unknown transform {op!r} (known: {known})", "op")
    return cls(spec, context or {})


# ------------------------------------------------------------------------------------- dates

YEAR, MONTH, DAY, HOUR, MINUTE, SECOND = 1, 2, 3, 4, 5, 6
_PRECISION_NAMES = {YEAR: "year", MONTH: "month", DAY: "day", HOUR: "hour", MINUTE: "minute"}


@dataclass(frozen=True, slots=True)
class Stamp:
    """A date/time with the precision it was given in (HL7 and FHIR both allow partial dates).

    ``fraction`` keeps the fractional-second digits as sent; ``tz`` is ``Z``, ``+hhmm`` or None.
    """

    year: int
    month: int = 1
    day: int = 1
    hour: int = 0
    minute: int = 0
    second: int = 0
    fraction: str = ""
    precision: int = YEAR
    tz: str | None = None

    def with_tz(self, tz: str) -> Stamp:
        return replace(self, tz=tz)

    def check(self) -> Stamp:
        try:
            datetime(self.year, self.month, self.day, self.hour, self.minute, min(self.second, 59))
        except ValueError as e:
            raise TransformFailed(f"not a real date/time: {e}")
        return self

    def to_v2(self) -> str:
        text = f"{self.year:04d}"
        parts = [
            (MONTH, f"{self.month:02d}"),
            (DAY, f"{self.day:02d}"),
            (HOUR, f"{self.hour:02d}"),
            (MINUTE, f"{self.minute:02d}"),
            (SECOND, f"{self.second:02d}"),
        ]
        text += "".join(s for p, s in parts if self.precision >= p)
        if self.fraction and self.precision >= SECOND:
            text += "." + self.fraction
        if self.tz and self.precision >= HOUR:
            text += "+0000" if self.tz == "Z" else self.tz
        return text

    def to_fhir(self, date_only: bool = False) -> str:
        text = f"{self.year:04d}"
        if self.precision >= MONTH:
            text += f"-{self.month:02d}"
        if self.precision >= DAY:
            text += f"-{self.day:02d}"
        if date_only or self.precision < HOUR:
            return text
        # FHIR times always carry seconds; missing minutes and seconds are zero.
        text += f"T{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        if self.fraction and self.precision >= SECOND:
            text += "." + self.fraction
        if self.tz:
            text += "Z" if self.tz in ("Z", "+0000") else f"{self.tz[:3]}:{self.tz[3:]}"
        return text

    def to_datetime(self) -> datetime:
        micro = int((self.fraction + "000000")[:6]) if self.fraction else 0
        return datetime(
            self.year, self.month, self.day, self.hour, self.minute, min(self.second, 59), micro
        )


_V2_DTM = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$"
)
_FHIR_DT = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def parse_v2_datetime(text: str) -> Stamp:
    """HL7 DTM/TS ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`` (TS's ``^precision`` ignored)."""
    text = text.split("^", 1)[0].strip()
    m = _V2_DTM.match(text)
    if not m:
        raise TransformFailed(f"{text!r} is not an HL7 date/time (YYYYMMDDHHMMSS)", text)
    digits = [g for g in m.groups()[:6] if g is not None]
    numbers = [int(g) for g in digits]
    precision = len(digits)
    if m[7] and precision < SECOND:
        raise TransformFailed(f"{text!r}: fractional seconds without seconds", text)
    return Stamp(
        *numbers,
        *([1] * max(0, 3 - precision)),
        *([0] * (6 - max(precision, 3))),
        fraction=m[7] or "",
        precision=precision,
        tz=m[8],
    ).check()


def parse_fhir_datetime(text: str) -> Stamp:
    m = _FHIR_DT.match(text.strip())
    if not m:
        raise TransformFailed(f"{text!r} is not a FHIR date or dateTime", text)
    y, mo, d, h, mi, s, frac, tz = m.groups()
    precision = YEAR + (mo is not None) + (d is not None)
    if h is not None:
        precision = SECOND if s is not None else MINUTE
    if tz and tz != "Z":
        tz = tz.replace(":", "")
    return Stamp(
        int(y),
        int(mo or 1),
        int(d or 1),
        int(h or 0),
        int(mi or 0),
        int(s or 0),
        fraction=frac or "",
        precision=precision,
        tz=tz,
    ).check()


def fhir_to_v2_datetime(text: str) -> str:
    """A FHIR date/dateTime/instant as an HL7 DTM with the same precision ('' if unreadable)."""
    try:
        return parse_fhir_datetime(text).to_v2()
    except TransformFailed:
        return ""


# strptime directives and the precision each one gives a parsed value.
_DIRECTIVE_PRECISION = {
    "Y": YEAR,
    "y": YEAR,
    "m": MONTH,
    "b": MONTH,
    "B": MONTH,
    "d": DAY,
    "j": DAY,
    "H": HOUR,
    "I": HOUR,
    "M": MINUTE,
    "S": SECOND,
    "f": SECOND,
}
_DIRECTIVE = re.compile(r"%(.)")


def _pattern_precision(pattern: str) -> int:
    found = [_DIRECTIVE_PRECISION.get(d, 0) for d in _DIRECTIVE.findall(pattern)]
    return max(found, default=0)


def _check_pattern(pattern: str, option: str) -> None:
    sample = datetime(2001, 2, 3, 4, 5, 6, 789000)
    try:
        datetime.strptime(sample.strftime(pattern), pattern)
    except ValueError as e:
        raise TransformSpecError(f"date: bad {option!r} pattern {pattern!r}: {e}", option)
    if not _pattern_precision(pattern):
        raise TransformSpecError(
            f"date: {option!r} pattern {pattern!r} has no date directive such as %Y", option
        )


def _reader(name: str) -> Callable[[str], Stamp]:
    if name == "v2":
        return parse_v2_datetime
    if name == "fhir":
        return parse_fhir_datetime
    _check_pattern(name, "from")
    precision = _pattern_precision(name)
    has_tz = "%z" in name

    def read(text: str) -> Stamp:
        try:
            dt = datetime.strptime(text, name)
        except ValueError:
            raise TransformFailed(f"{text!r} does not match the date pattern {name!r}", text)
        tz = None
        if has_tz and dt.utcoffset() is not None:
            minutes = int(dt.utcoffset().total_seconds() // 60)
            sign = "+" if minutes >= 0 else "-"
            tz = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
        fraction = f"{dt.microsecond:06d}".rstrip("0") if "%f" in name else ""
        return Stamp(
            dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, fraction, precision, tz
        )

    return read


def _writer(name: str) -> Callable[[Stamp], str]:
    if name == "v2":
        return Stamp.to_v2
    if name == "fhir":
        return Stamp.to_fhir
    if name == "fhir-date":
        return lambda stamp: stamp.to_fhir(date_only=True)
    _check_pattern(name, "to")
    needs = _pattern_precision(name)

    def write(stamp: Stamp) -> str:
        if stamp.precision < min(needs, SECOND):
            have = _PRECISION_NAMES.get(stamp.precision, "second")
            raise TransformFailed(
                f"the value is precise to the {have} only; the pattern {name!r} needs more"
            )
        return stamp.to_datetime().strftime(name)

    return write
