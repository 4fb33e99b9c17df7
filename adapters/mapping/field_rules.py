"""Analyst field rules: ordered edits layered on the built-in HL7 v2 -> FHIR map.

A mapping is the built-in map plus a list of rules. Each rule is plain JSON::

    {
      "name": "family name in capitals",       # optional; errors and issues quote it
      "source": "PID-5(1).1",                  # optional; a string or a list of strings
      "target": "Patient.name[0].family",      # required
      "transforms": ["trim", {"op": "upper"}], # optional; applied in order
      "required": false,                        # optional; true makes a missing value an error
      "enabled": true                           # optional
    }

Sources. A string shaped like a v2 path (``PID-5``, ``PID-3(2).1``, ``OBX(2)-5.1.2``,
``PID-3(*).1`` for every repetition) reads the inbound message. Anything else is a FHIRPath
expression on the canonical output as it stands when the rule runs (earlier rules included). A
FHIRPath that starts with a resource type (``Patient.name.given.first()``) is evaluated on a
resource of that type: the target resource itself when the types agree, else the first such
resource; one that starts with ``Bundle`` on the whole Bundle; any other (``name.family``) on the
target resource. Several sources give several values, which a ``concat`` transform joins (or a
repeating target such as ``Patient.name[0].given`` takes as a list); a rule without a source takes
its value from a ``default`` transform (a constant) or is a ``drop``. HL7's explicit null ``""``
counts as absent.

Variables. A caller may give the rules FHIRPath environment variables: `compile_rules` is told
their names (``variables=("input",)``) and `RuleSet.apply` their values. A source that starts
with one (``%input.patient.mrn``, as the custom JSON codec uses it) reads that value only, so it
is evaluated once per rule, not per target resource. A variable not declared is a compile error.

Targets: ``ResourceType[selector].element[index].element...``

- selector: none = the first resource of that type, ``[2]`` = the third (0-based), ``[*]`` = every
  one, ``[?fhirpath]`` = every one for which the expression is true, such as
  ``Observation[?code.coding.code = '718-7'].interpretation``.
- index on a repeating element: none = the first element (or, on the last step, the whole list),
  ``[n]`` = element n (n may be the current length: append), ``[+]`` = append a new element,
  ``[=]`` = the last element (FSH's soft indexing, so two rules can fill one new identifier),
  ``[*]`` = every existing element.

Element names and cardinality are checked against the FHIR R4 resource definitions when the rule
is compiled, and a value is converted to the target's primitive type when it is set (``"true"``
-> true for a boolean, ``"7"`` -> 7 for an integer); a date target must already hold a FHIR date
(use the ``date`` transform). Missing intermediate objects and lists are created.

Transforms: see `adapters.mapping.transforms` (trim, upper, lower, date, lookup, default,
concat, split, replace, drop).

`compile_rules` checks everything it can up front and raises `RuleError` naming the rule, the
part and what is wrong; `RuleSet.apply` never raises for data: it returns a new Bundle (the input
is never modified; containers are copied along each written path only) and a list of `RuleIssue`.
Note for callers: a rule that rewrites an identifier does not refresh the Bundle entry's
conditional ``request`` (``ifNoneExist``/conditional URL); the map that builds those must
(`adapters.mapping.v2_rules.apply_after_map` does it for the built-in v2 map).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from adapters.codecs.hl7v2 import Message, Path
from adapters.mapping.result import ConversionIssue
from adapters.mapping.transforms import (
    Concat,
    Default,
    Drop,
    Transform,
    TransformFailed,
    TransformSpecError,
    compact,
    compile_transform,
)

__all__ = [
    "RuleError",
    "RuleIssue",
    "Rule",
    "RuleSet",
    "compile_rules",
    "fhirpath_syntax_error",
    "resource_elements",
]

RULE_KEYS = ("name", "description", "source", "target", "transforms", "required", "enabled")


class RuleError(ValueError):
    """A rule that cannot be compiled. Says which rule, which part of it and what is wrong.

    ``index`` is the rule's position in the list (0-based; messages say ``rule #1`` for 0),
    ``part`` the key at fault (``source``, ``target``, ``transforms[1].pattern``) and ``path``
    the offending path or expression, when there is one.
    """

    def __init__(
        self,
        reason: str,
        *,
        index: int | None = None,
        name: str | None = None,
        part: str | None = None,
        path: str | None = None,
    ) -> None:
        self.reason = reason
        self.index = index
        self.name = name
        self.part = part
        self.path = path
        where = _label(index, name)
        if part:
            where += f", {part}"
        if path:
            where += f" {path!r}"
        super().__init__(f"{where}: {reason}" if where else reason)


def _label(index: int | None, name: str | None) -> str:
    text = f"rule #{index + 1}" if index is not None else "rule"
    return f"{text} ({name!r})" if name else text


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """Something a rule could not do for one message.

    ``origin`` is ``sender`` when the message's value is at fault and ``rule`` when the rule is;
    ``blocking`` marks a required rule that failed: the message must not be passed on.
    """

    severity: str  # always "error" today: a rule that could not write its value
    rule: str
    target: str
    reason: str
    source: str = ""
    value: str | None = None
    origin: str = "sender"  # "sender" | "rule"
    blocking: bool = False

    def __str__(self) -> str:
        src = f" from {self.source}" if self.source else ""
        return f"{self.rule}{src} -> {self.target}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_conversion_issue(self) -> ConversionIssue:
        """The same problem in the built-in map's terms, so one list can hold both."""
        field = self.source if _V2_SHAPE.match(self.source or "") else ""
        return ConversionIssue(
            segment=field[:3],
            field=field,
            value=self.value or "",
            target=self.target,
            reason=f"{self.rule}: {self.reason}",
            origin="sender" if self.origin == "sender" else "map",
            severity="error",
        )


# ------------------------------------------------------------------------- FHIR element schema

_PRIMITIVE_KINDS = {
    "Boolean": "boolean",
    "Integer": "integer",
    "Integer64": "integer",
    "PositiveInt": "integer",
    "UnsignedInt": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Instant": "instant",
    "Time": "time",
}


@dataclass(frozen=True, slots=True)
class _Element:
    is_list: bool
    kind: str  # "complex", "any" (an embedded resource), or a primitive kind ("string", ...)
    model: Any = None  # the fhir.resources class of a complex element


@cache
def _resource_class(name: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.resource import Resource

    try:
        cls = get_fhir_model_class(name)
    except (ValueError, KeyError):
        return None
    return cls if issubclass(cls, Resource) else None


@lru_cache(maxsize=1)
def _resource_names() -> tuple[str, ...]:
    from fhir.resources.R4B import fhirtypes

    names = [n[: -len("Type")] for n in dir(fhirtypes) if n.endswith("Type")]
    return tuple(n for n in names if n[:1].isupper() and _resource_class(n) is not None)


@cache
def _elements(model: Any) -> dict[str, _Element]:
    out = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra or {}
        if isinstance(extra, dict) and extra.get("element_property"):
            out[info.alias or name] = _describe(info.annotation)
    return out


def _describe(annotation: Any) -> _Element:
    is_list = False
    t = annotation
    while True:
        origin = typing.get_origin(t)
        if origin in (typing.Union, types.UnionType):
            t = next(a for a in typing.get_args(t) if a is not type(None))
        elif origin is list:
            is_list, t = True, typing.get_args(t)[0]
        elif origin is typing.Annotated:
            marker = typing.get_args(t)[-1]
            return _Element(is_list, _PRIMITIVE_KINDS.get(type(marker).__name__, "string"))
        else:
            break
    if t is bool:
        return _Element(is_list, "boolean")
    if hasattr(t, "get_model_klass"):
        model = t.get_model_klass()
        if model.__name__ in ("Resource", "DomainResource"):
            return _Element(is_list, "any")
        return _Element(is_list, "complex", model)
    return _Element(is_list, "string")


def resource_elements(resource_type: str) -> dict[str, bool]:
    """The elements of a FHIR R4 resource type, each with whether it repeats; ValueError naming
    the closest types when ``resource_type`` is not one (Bundle is not: it holds the others)."""
    if resource_type in ("Bundle", "Resource", "DomainResource"):
        raise ValueError(f"name a resource type such as Patient, not {resource_type!r}")
    model = _resource_class(resource_type)
    if model is None:
        raise ValueError(
            f"{resource_type!r} is not a FHIR resource type"
            f"{_suggest(resource_type, _resource_names())}"
        )
    return {name: element.is_list for name, element in _elements(model).items()}


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    close += [c for c in choices if c.startswith(word) and c not in close][:3]
    return f" (did you mean {', '.join(close[:4])}?)" if close else ""


# ----------------------------------------------------------------------------------- FHIRPath


def fhirpath_syntax_error(expression: str) -> str | None:
    """The first syntax error in a FHIRPath expression, or None.

    fhirpathpy's own parser ignores syntax errors (``Patient.name.`` compiles), so the grammar's
    whole-expression rule is run here with a listener that records them.
    """
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    errors: list[str] = []

    class Collect(ErrorListener):
        def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: N802
            errors.append(f"at character {column + 1}: {msg}")

    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(Collect())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(Collect())
    parser.entireExpression()
    return errors[0] if errors else None


_ROOT_TYPE = re.compile(r"^\s*([A-Z][A-Za-z]+)(?![\w(])")
_ROOT_VARIABLE = re.compile(r"^\s*%([A-Za-z_][A-Za-z0-9_]*)")
# FHIRPath's own environment variables, always there.
_STANDARD_VARIABLES = frozenset({"context", "resource", "rootResource", "ucum", "sct", "loinc"})


class _FhirPath:
    """A compiled FHIRPath and what it starts from: a resource type, "Bundle", a caller's
    variable (``root_var``), or None (relative)."""

    __slots__ = ("text", "root_type", "root_var", "fn")

    def __init__(self, text: str, variables: Sequence[str] = ()) -> None:
        import fhirpathpy
        from fhirpathpy.models import models

        if not text.strip():
            raise ValueError("the expression is empty")
        problem = fhirpath_syntax_error(text)
        if problem:
            raise ValueError(f"FHIRPath syntax error {problem}")
        m = _ROOT_TYPE.match(text)
        self.root_type = m[1] if m and _resource_class(m[1]) else None
        m = _ROOT_VARIABLE.match(text)
        self.root_var = m[1] if m and m[1] not in _STANDARD_VARIABLES else None
        if self.root_var is not None and self.root_var not in variables:
            known = ", ".join(f"%{v}" for v in variables) or "none here"
            raise ValueError(f"unknown variable %{self.root_var} (known: {known})")
        self.text = text
        self.fn = fhirpathpy.compile(text, models["r4"])
        # Unknown functions only surface when evaluated: try it once on an empty resource.
        try:
            self.fn(
                {"resourceType": self.root_type} if self.root_type else {},
                {name: {} for name in variables},
            )
        except Exception as e:  # fhirpathpy raises bare Exceptions
            raise ValueError(f"FHIRPath cannot be evaluated: {e}")

    def __call__(
        self, context: Mapping[str, Any], variables: Mapping[str, Any] | None = None
    ) -> list[Any]:
        return self.fn(context, variables)


# -------------------------------------------------------------------------------------- sources

_V2_SHAPE = re.compile(r"^\s*[A-Z][A-Z0-9]{2}(\([^)]*\))?-", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _V2Source:
    text: str
    path: Path

    def read(self, message: Message | None) -> list[Any]:
        if message is None:
            return []
        p = self.path
        if p.repetition:
            return compact([message.get(p)])
        # PID-3(*).1: the value from every repetition
        segments = message.all(p.segment)
        if p.occurrence > len(segments):
            return []
        seg = segments[p.occurrence - 1]
        reps = range(1, len(seg.repetitions(p.field)) + 1)
        if p.component is None:
            return compact([seg.get(p.field, rep=r) for r in reps])
        return compact([seg.get(p.field, p.component, p.subcomponent, rep=r) for r in reps])


def _compile_source(text: Any, variables: Sequence[str] = ()) -> _V2Source | _FhirPath:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a source must be a non-empty string (a v2 path or a FHIRPath)")
    if _V2_SHAPE.match(text):
        text = text.strip()
        text = text[:3].upper() + text[3:]
        return _V2Source(text, Path.parse(text))
    return _FhirPath(text, variables)


# -------------------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class _Step:
    name: str
    index: int | str | None  # None, an int, "+", "=" or "*"
    element: _Element


@dataclass(frozen=True, slots=True)
class _Target:
    text: str
    resource_type: str
    selector: int | str | _FhirPath | None  # None (first), an int, "*" or a filter
    steps: tuple[_Step, ...]
    leaf: _Step = field(init=False)
    whole_list: bool = field(init=False)  # the last step is a repeating element without index

    def __post_init__(self) -> None:
        leaf = self.steps[-1]
        object.__setattr__(self, "leaf", leaf)
        object.__setattr__(self, "whole_list", leaf.element.is_list and leaf.index is None)


_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _bracket(text: str, start: int) -> tuple[str, int]:
    """The text inside ``[...]`` opening at ``start`` (quotes and nesting respected), and the end."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i].strip(), i + 1
        i += 1
    raise ValueError(f"unclosed '[' at character {start + 1}")


def _compile_target(text: Any, variables: Sequence[str] = ()) -> _Target:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the target must be a path such as Patient.name[0].family")
    text = text.strip()
    m = _IDENT.match(text)
    if not m:
        raise ValueError("a target starts with a resource type, e.g. Patient.name[0].family")
    rtype, pos = m[0], m.end()
    model = _resource_class(rtype)
    if model is None or rtype == "Bundle":
        raise ValueError(
            f"{rtype!r} is not a FHIR resource type{_suggest(rtype, _resource_names())}"
        )
    selector: int | str | _FhirPath | None = None
    if text[pos : pos + 1] == "[":
        inner, pos = _bracket(text, pos)
        if inner == "*" or inner.isdigit():
            selector = "*" if inner == "*" else int(inner)
        elif inner.startswith("?"):
            selector = _FhirPath(inner[1:], variables)
        else:
            raise ValueError(
                f"resource selector [{inner}] must be a 0-based number, * or ?<FHIRPath condition>"
            )
    steps: list[_Step] = []
    where = rtype
    kind = "complex"
    while pos < len(text):
        if text[pos] != ".":
            raise ValueError(f"unexpected {text[pos]!r} at character {pos + 1}")
        m = _IDENT.match(text, pos + 1)
        if not m:
            raise ValueError(f"an element name must follow '.' at character {pos + 1}")
        name, pos = m[0], m.end()
        index: int | str | None = None
        if text[pos : pos + 1] == "[":
            inner, pos = _bracket(text, pos)
            if inner.isdigit():
                index = int(inner)
            elif inner in ("+", "=", "*"):
                index = inner
            else:
                raise ValueError(f"index [{inner}] after {name!r} must be a number, +, = or *")
        if kind == "any":  # inside an embedded resource: no schema to check against
            element = _Element(index is not None, "any")
        elif kind != "complex":
            raise ValueError(f"{where} is a {kind} value and has no element {name!r}")
        else:
            known = _elements(model)
            if name not in known:
                raise ValueError(f"{where} has no element {name!r}{_suggest(name, list(known))}")
            element = known[name]
            if index is not None and not element.is_list:
                raise ValueError(f"{where}.{name} does not repeat; remove [{inner}]")
        steps.append(_Step(name, index, element))
        where, kind, model = f"{where}.{name}", element.kind, element.model
    if not steps:
        raise ValueError(f"name an element of {rtype}, e.g. {rtype}.id")
    return _Target(text, rtype, selector, tuple(steps))


# -------------------------------------------------------------------------- writing values

_FHIR_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$")
_FHIR_TIME = r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?"
_FHIR_TZ = r"(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))"
_FHIR_DATETIME = re.compile(
    rf"^\d{{4}}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T{_FHIR_TIME}{_FHIR_TZ})?)?)?$"
)
_FHIR_INSTANT = re.compile(
    rf"^\d{{4}}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T{_FHIR_TIME}{_FHIR_TZ}$"
)
_TRUE = {"true", "t", "y", "yes", "1"}
_FALSE = {"false", "f", "n", "no", "0"}
_FORMAT_HINT = {
    "date": "YYYY, YYYY-MM or YYYY-MM-DD",
    "dateTime": "YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a timezone",
    "instant": "YYYY-MM-DDThh:mm:ss with a timezone",
    "time": "hh:mm:ss",
}
_PATTERNS = {
    "date": _FHIR_DATE,
    "dateTime": _FHIR_DATETIME,
    "instant": _FHIR_INSTANT,
    "time": re.compile(rf"^{_FHIR_TIME}$"),
}


class _CannotSet(Exception):
    """The value does not fit the target (type) or the path cannot be followed (index)."""


def _plain(value: Any) -> Any:
    """``value`` with FHIRPath's Decimals (how it reads JSON numbers) as JSON numbers again."""
    if isinstance(value, Decimal):
        whole = value.is_finite() and value == value.to_integral_value()
        return int(value) if whole else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, element: _Element, path: str) -> Any:
    kind = element.kind
    if kind == "any":
        return _plain(value)
    if kind == "complex":
        if isinstance(value, dict):
            return _plain(value)
        raise _CannotSet(f"{path} is a {element.model.__name__}; name one of its elements")
    if isinstance(value, dict | list):
        raise _CannotSet(f"{path} holds a {kind}, not an object")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise _CannotSet(f"{path} is a boolean; {value!r} is not true/false/Y/N")
    if kind == "integer":
        try:
            if isinstance(value, bool) or (
                isinstance(value, float | Decimal) and value != int(value)
            ):
                raise ValueError
            return int(value)
        except (ValueError, OverflowError):
            raise _CannotSet(f"{path} is an integer; {value!r} is not")
    if kind == "decimal":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            raise _CannotSet(f"{path} is a decimal; {value!r} is not a number")
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else number
    text = value if isinstance(value, str) else str(value)
    pattern = _PATTERNS.get(kind)
    if pattern is not None and not pattern.match(text):
        raise _CannotSet(
            f"{path} is a FHIR {kind} ({_FORMAT_HINT[kind]}); {text!r} is not"
            " (a 'date' transform converts it)"
        )
    return text


def _leaf_value(target: _Target, values: list[Any]) -> Any:
    leaf = target.leaf.element
    if target.whole_list:
        return [_coerce(v, leaf, target.text) for v in values]
    return _coerce(values[0], leaf, target.text)


class _Nothing(Exception):
    """A ``[*]`` over an empty list: nothing to write."""


def _put(node: Any, steps: tuple[_Step, ...], pos: int, leaf: Any, whole_list: bool) -> dict:
    """A copy of ``node`` with ``leaf`` written at ``steps[pos:]``; copies only along the path."""
    if node is not None and not isinstance(node, dict):
        raise _CannotSet(f"{steps[pos - 1].name} holds {type(node).__name__}, not an object")
    step = steps[pos]
    last = pos == len(steps) - 1
    out = dict(node) if node else {}
    current = out.get(step.name)
    if not step.element.is_list:
        out[step.name] = leaf if last else _put(current, steps, pos + 1, leaf, whole_list)
        return out
    if last and whole_list:
        out[step.name] = leaf
        return out
    items = list(current) if isinstance(current, list) else ([current] if current else [])
    size, index = len(items), step.index
    if index == "*":
        if not items:
            raise _Nothing
        places = range(size)
    else:
        if isinstance(index, int):
            place = index
        elif index == "+":
            place = size
        elif index == "=":
            place = max(size - 1, 0)
        else:
            place = 0
        if place > size:
            raise _CannotSet(f"{step.name}[{place}] cannot be set: it has {size} element(s)")
        places = range(place, place + 1)
    for place in places:
        old = items[place] if place < size else None
        new = leaf if last else _put(old, steps, pos + 1, leaf, whole_list)
        if place < len(items):
            items[place] = new
        else:
            items.append(new)
    out[step.name] = items
    return out


_GONE = object()


def _remove(node: Any, steps: tuple[_Step, ...], pos: int) -> Any:
    """A copy of ``node`` without the element at ``steps[pos:]``; ``_GONE`` if nothing is left.

    Empty objects and lists left behind are removed too: FHIR forbids them.
    """
    if not isinstance(node, dict):
        return node
    step = steps[pos]
    if step.name not in node:
        return node
    last = pos == len(steps) - 1
    out = dict(node)
    current = node[step.name]
    if not step.element.is_list or not isinstance(current, list):
        new = _GONE if last else _remove(current, steps, pos + 1)
    elif last and step.index in (None, "*"):
        new = _GONE
    else:
        places = _places(step.index, len(current))
        items: list[Any] = []
        for i, item in enumerate(current):
            kept = item
            if i in places:
                kept = _GONE if last else _remove(item, steps, pos + 1)
            if kept is not _GONE:
                items.append(kept)
        new = items if items else _GONE
    if new is current:
        return node
    if new is _GONE:
        del out[step.name]
    else:
        out[step.name] = new
    return out if out else _GONE


def _places(index: int | str | None, size: int) -> set[int]:
    if index == "*":
        return set(range(size))
    if index == "=":
        return {size - 1} if size else set()
    return {0 if index is None else int(index)}


# ---------------------------------------------------------------------------------------- rules


class Rule:
    """One compiled rule. Build rules with `compile_rules`, not by hand."""

    __slots__ = (
        "index",
        "name",
        "sources",
        "target",
        "transforms",
        "required",
        "enabled",
        "description",
        "spec_source",
        "label",
        "source_text",
        "drops",
        "per_resource",
    )

    def __init__(
        self,
        index: int,
        name: str | None,
        sources: tuple[_V2Source | _FhirPath, ...],
        target: _Target,
        transforms: tuple[Transform, ...],
        *,
        required: bool = False,
        enabled: bool = True,
        description: str | None = None,
        spec_source: str | list[str] | None = None,
    ) -> None:
        self.index = index
        self.name = name
        self.sources = sources
        self.target = target
        self.transforms = transforms
        self.required = required
        self.enabled = enabled
        self.description = description
        self.spec_source = spec_source
        # Precomputed: apply() runs per message, compile once.
        self.label = _label(index, name)
        self.source_text = " + ".join(s.text for s in sources)
        self.drops = bool(transforms) and isinstance(transforms[-1], Drop)
        # Unless a FHIRPath reads the target resource itself, one value serves every target.
        self.per_resource = any(
            isinstance(s, _FhirPath)
            and s.root_var is None
            and s.root_type in (None, target.resource_type)
            for s in sources
        )

    def __repr__(self) -> str:
        return f"Rule({self.label}: {self.source_text or '-'} -> {self.target.text})"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        if self.description is not None:
            out["description"] = self.description
        if self.spec_source is not None:
            out["source"] = self.spec_source
        out["target"] = self.target.text
        if self.transforms:
            out["transforms"] = [t.to_json() for t in self.transforms]
        if self.required:
            out["required"] = True
        if not self.enabled:
            out["enabled"] = False
        return out


def _compile_rule(
    index: int, spec: Any, tables: Mapping[str, Any] | None, variables: Sequence[str] = ()
) -> Rule:
    if not isinstance(spec, Mapping):
        raise RuleError("a rule must be an object with at least a 'target'", index=index)
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise RuleError("'name' must be a string", index=index, part="name")

    def fail(reason: str, part: str | None = None, path: str | None = None) -> RuleError:
        return RuleError(reason, index=index, name=name, part=part, path=path)

    unknown = sorted(set(spec) - set(RULE_KEYS))
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (allowed: {', '.join(RULE_KEYS)})", unknown[0])
    for flag in ("required", "enabled"):
        if flag in spec and not isinstance(spec[flag], bool):
            raise fail(f"{flag!r} must be true or false", flag)
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise fail("'description' must be a string", "description")

    if "target" not in spec:
        raise fail("'target' is required, e.g. Patient.name[0].family", "target")
    try:
        target = _compile_target(spec["target"], variables)
    except ValueError as e:
        raise fail(str(e), "target", str(spec["target"]))

    raw_sources = spec.get("source")
    source_list = raw_sources if isinstance(raw_sources, list) else [raw_sources]
    if raw_sources is None:
        source_list = []
    sources = []
    for i, text in enumerate(source_list):
        part = "source" if not isinstance(raw_sources, list) else f"source[{i}]"
        try:
            sources.append(_compile_source(text, variables))
        except ValueError as e:
            raise fail(str(e), part, text if isinstance(text, str) else None)

    raw_transforms = spec.get("transforms", [])
    if not isinstance(raw_transforms, list):
        raise fail("'transforms' must be a list", "transforms")
    transforms = []
    for i, t in enumerate(raw_transforms):
        try:
            transforms.append(compile_transform(t, {"tables": tables or {}}))
        except TransformSpecError as e:
            part = f"transforms[{i}]" + (f".{e.option}" if e.option and e.option != "op" else "")
            raise fail(str(e), part)

    rule = Rule(
        index,
        name,
        tuple(sources),
        target,
        tuple(transforms),
        required=spec.get("required", False),
        enabled=spec.get("enabled", True),
        description=description,
        spec_source=raw_sources,
    )
    _check_shape(rule, fail)
    return rule


def _check_shape(rule: Rule, fail: Any) -> None:
    """Rule-level consistency that no single part can see on its own."""
    ops = [t.op for t in rule.transforms]
    if "drop" in ops:
        if ops != ["drop"] or rule.sources:
            raise fail("a drop rule has no source and 'drop' as its only transform", "transforms")
        if rule.required:
            raise fail("a drop rule cannot be required", "required")
        if any(s.index == "+" for s in rule.target.steps):
            raise fail("[+] appends; it cannot name something to drop", "target", rule.target.text)
        return
    if not rule.sources and not any(isinstance(t, Default) for t in rule.transforms):
        raise fail("give a 'source', a 'default' transform (a constant) or a 'drop'", "source")
    many = len(rule.sources) > 1 or any(
        isinstance(s, _V2Source) and s.path.repetition == 0 for s in rule.sources
    )
    if (
        many
        and not rule.target.whole_list
        and not any(isinstance(t, Concat) for t in rule.transforms)
    ):
        raise fail(
            "several source values need a 'concat' transform (or a repeating target such as"
            " Patient.name[0].given)",
            "transforms",
        )
    leaf = rule.target.leaf.element
    if leaf.kind == "complex" and any(isinstance(s, _V2Source) for s in rule.sources):
        raise fail(
            f"a v2 value is text; the target is a {leaf.model.__name__}: name one of its elements",
            "target",
            rule.target.text,
        )


class RuleSet:
    """Compiled rules in order. Compile once with `compile_rules`, apply to many messages."""

    __slots__ = ("rules",)

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self.rules)} rules)"

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.rules]

    def apply(
        self,
        message: Message | None,
        bundle: Mapping[str, Any],
        variables: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[RuleIssue]]:
        """Apply every enabled rule in order; returns a new Bundle and the issues found.

        ``message`` is the parsed inbound v2 message (None for a FHIR-sourced channel: v2
        sources then read nothing); ``variables`` the values of the variables the rules were
        compiled with (``{"input": document}``).
        """
        draft = _Draft(bundle, variables)
        issues: list[RuleIssue] = []
        for rule in self.rules:
            if rule.enabled:
                _apply_rule(rule, message, draft, issues)
        return draft.result(), issues


class _Draft:
    """The Bundle being rewritten: a new root and entry list; entries replaced when written."""

    __slots__ = ("root", "entries", "by_type", "variables")

    def __init__(self, bundle: Mapping[str, Any], variables: Mapping[str, Any] | None) -> None:
        self.root = dict(bundle)
        self.variables = variables
        entries = bundle.get("entry")
        self.entries: list[Any] = list(entries) if isinstance(entries, list) else []
        self.by_type: dict[str, list[int]] = {}
        for i, entry in enumerate(self.entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                self.by_type.setdefault(resource["resourceType"], []).append(i)
        if "entry" in self.root:
            self.root["entry"] = self.entries

    def resource(self, i: int) -> dict[str, Any]:
        return self.entries[i]["resource"]

    def replace(self, i: int, resource: dict[str, Any]) -> None:
        self.entries[i] = {**self.entries[i], "resource": resource}

    def first(self, resource_type: str) -> dict[str, Any] | None:
        found = self.by_type.get(resource_type)
        return self.resource(found[0]) if found else None

    def select(self, target: _Target) -> list[int]:
        found = self.by_type.get(target.resource_type, [])
        sel = target.selector
        if sel is None:
            return found[:1]
        if sel == "*":
            return list(found)
        if isinstance(sel, int):
            return found[sel : sel + 1]
        return [i for i in found if _fhirpath(sel, self.resource(i), self.variables) == [True]]

    def result(self) -> dict[str, Any]:
        return self.root


def _fhirpath(
    expr: _FhirPath, context: Mapping[str, Any], variables: Mapping[str, Any] | None = None
) -> list[Any]:
    try:
        return expr(context, variables)
    except Exception as e:  # fhirpathpy raises bare Exceptions on data it cannot handle
        raise TransformFailed(f"FHIRPath {expr.text!r} failed: {e}")


def _read(
    rule: Rule, message: Message | None, draft: _Draft, resource: dict[str, Any] | None
) -> list[Any]:
    values: list[Any] = []
    for source in rule.sources:
        if isinstance(source, _V2Source):
            values += source.read(message)
            continue
        if source.root_var is not None:  # reads its variable only, whatever the target
            context: Mapping[str, Any] | None = {}
        elif source.root_type == "Bundle":
            context = draft.root
        elif source.root_type in (None, rule.target.resource_type):
            context = resource
        else:
            context = draft.first(source.root_type)
        if context is not None:
            values += compact(_fhirpath(source, context, draft.variables))
    return values


def _report(
    issues: list[RuleIssue], rule: Rule, reason: str, value: Any = None, origin: str = "sender"
) -> None:
    shown = None if value is None else str(value)[:200]
    issues.append(
        RuleIssue(
            "error",
            rule.label,
            rule.target.text,
            reason,
            rule.source_text,
            shown,
            origin,
            rule.required,
        )
    )


def _apply_rule(
    rule: Rule, message: Message | None, draft: _Draft, issues: list[RuleIssue]
) -> None:
    target = rule.target
    try:
        places = draft.select(target)
    except TransformFailed as e:
        _report(issues, rule, str(e), origin="rule")
        return
    if not places:
        if rule.required:
            _report(issues, rule, f"the bundle has no {target.resource_type} to write to")
        return
    if rule.drops:
        for i in places:
            new = _remove(draft.resource(i), target.steps, 0)
            # Only resourceType can be left when everything else went: keep it.
            draft.replace(i, {"resourceType": target.resource_type} if new is _GONE else new)
        return
    cached: tuple[list[Any], list[Any]] | None = None
    for i in places:
        resource = draft.resource(i)
        try:
            if cached is None or rule.per_resource:
                raw = _read(rule, message, draft, resource)
                values = raw
                for step in rule.transforms:
                    values = step(values)
                cached = raw, values
            raw, values = cached
        except TransformFailed as e:
            _report(issues, rule, str(e), e.value)
            continue
        if not values:
            if rule.required:
                why = "became empty after the transforms" if raw else "is empty or absent"
                _report(issues, rule, f"required value {why}")
            continue
        try:
            leaf = _leaf_value(target, values)
            draft.replace(i, _put(resource, target.steps, 0, leaf, target.whole_list))
        except _CannotSet as e:
            _report(issues, rule, str(e), values[0], origin="rule")
        except _Nothing:
            continue


def compile_rules(
    rules: Sequence[Mapping[str, Any]] | None,
    *,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    variables: Sequence[str] = (),
) -> RuleSet:
    """Validate and compile rules (JSON data) into a `RuleSet`; raises `RuleError`.

    ``tables`` are named lookup tables that ``{"op": "lookup", "table": "<name>"}`` refers to;
    ``variables`` the names of the FHIRPath variables (``%input``) that `RuleSet.apply` will be
    given values for.
    """
    if rules is None:
        return RuleSet(())
    if isinstance(rules, str | bytes | Mapping) or not isinstance(rules, Sequence):
        raise RuleError("rules must be a list of rule objects")
    variables = tuple(variables)
    return RuleSet([_compile_rule(i, spec, tables, variables) for i, spec in enumerate(rules)])
