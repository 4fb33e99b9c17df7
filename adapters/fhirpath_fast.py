"""A fast path for the FHIRPath that routing rules are made of, evaluated on plain JSON.

fhirpathpy interprets its syntax tree node by node and wraps every value it meets; a channel's
five rules cost it about a millisecond on a 20-OBX ORU, and routing sits on the message path.
Most rules use a small part of the language: paths, ``ofType``, ``where``, ``exists``, ``count``,
comparisons, ``and``/``or``/``not``, a few string functions and the header variables. `compile_fast`
turns such an expression into nested Python closures over the JSON as it is; anything else gives
None, and the caller keeps fhirpathpy for it.

The fast path never guesses: where the answer depends on what fhirpathpy knows and plain JSON does
not (a choice type such as ``value[x]``, a primitive's extension, a date compared as a date, a
type test on a datatype, values of two kinds compared, a collection where one value is expected)
it raises `Unsure`, and the caller asks fhirpathpy for that message. tests/adapters check both
give the same answers on the corpus.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

# focus (the input collection), this ($this), variables -> result collection
Node = Callable[[list, Any, Mapping[str, Any]], list]


class Unsure(Exception):
    """This value needs what only fhirpathpy knows: evaluate the expression there."""


class Unsupported(Exception):
    """The expression uses more of the language than the fast path covers."""


# Strings FHIRPath reads as dates, times or instants when the model says so.
_TEMPORAL = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?(T.*)?$|^\d{2}:\d{2}")
_STANDARD_VARIABLES = frozenset({"context", "resource", "rootResource", "ucum", "sct", "loinc"})


def compile_fast(text: str) -> Callable[[Mapping, Mapping[str, Any]], list] | None:
    """A function of (root, variables) giving what fhirpathpy gives, or raising Unsure; None
    when the expression is beyond the fast path."""
    from fhirpathpy.parser import parse

    try:
        node = _compile(parse(text)["children"][0])
    except Unsupported:
        return None
    return lambda root, variables: node([root], root, variables)


def _compile(ast: dict) -> Node:
    kind = ast.get("type")
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise Unsupported(kind)
    return handler(ast)


def _children(ast: dict) -> list[dict]:
    return ast.get("children") or []


def _only_child(ast: dict) -> Node:
    children = _children(ast)
    if len(children) != 1:
        raise Unsupported(ast.get("type"))
    return _compile(children[0])


def _identifier(ast: dict) -> str:
    [ident] = _children(ast)
    if ident.get("type") != "Identifier":
        raise Unsupported(ident.get("type"))
    return ident["text"]


# --- terms and invocations


def _invocation_expression(ast: dict) -> Node:
    source, step = _children(ast)
    before = _compile(source)
    after = _compile(step)
    return lambda focus, this, env: after(before(focus, this, env), this, env)


def _member(ast: dict) -> Node:
    name = _identifier(ast)
    if name[:1].isupper():  # a type name (Patient.name): fhirpathpy filters by resource type
        raise Unsupported(name)
    extension = f"_{name}"  # a primitive's extension: fhirpathpy merges it into the value
    return lambda focus, this, env: _navigate(focus, name, extension)


def _navigate(focus: list, name: str, extension: str) -> list:
    out: list = []
    for item in focus:
        if type(item) is not dict:
            continue
        value = item.get(name)
        if extension in item or (value is None and _has_choice(item, name)):
            raise Unsure(name)
        if value is None:
            continue
        if type(value) is list:
            if None in value:  # a null only stands beside a primitive's extension
                raise Unsure(name)
            out += value
        else:
            out.append(value)
    return out


def _has_choice(item: dict, name: str) -> bool:
    n = len(name)
    return any(k.startswith(name) and k[n : n + 1].isupper() for k in item)


def _this(ast: dict) -> Node:
    return lambda focus, this, env: [this]


def _variable(ast: dict) -> Node:
    [constant] = _children(ast)
    name = _identifier(constant)
    if name in _STANDARD_VARIABLES:
        raise Unsupported(name)

    def read(focus, this, env):
        if name not in env:
            raise Unsure(name)  # fhirpathpy says it is undefined, in its words
        value = env[name]
        return [] if value is None else [value]

    return read


def _literal(ast: dict) -> Node:
    [literal] = _children(ast)
    kind, text = literal.get("type"), literal.get("text", "")
    if kind == "StringLiteral" and "\\" not in text:
        value: Any = text[1:-1]
    elif kind == "BooleanLiteral":
        value = text == "true"
    elif kind == "NumberLiteral":
        value = float(text) if "." in text else int(text)
    else:
        raise Unsupported(kind)
    return lambda focus, this, env: [value]


# --- functions


def _function(ast: dict) -> Node:
    [functn] = _children(ast)
    ident, *rest = _children(functn)
    name = ident["text"]
    params = _children(rest[0]) if rest else []
    build = _FUNCTIONS.get(name)
    if build is None:
        raise Unsupported(name)
    return build(params)


def _no_params(params: list, fn: Callable[[list], list]) -> Node:
    if params:
        raise Unsupported("parameters")
    return lambda focus, this, env: fn(focus)


def _where(params: list) -> Node:
    if len(params) != 1:
        raise Unsupported("where")
    criterion = _compile(params[0])

    def where(focus, this, env):
        kept = []
        for item in focus:
            verdict = criterion([item], item, env)
            if verdict == [True]:
                kept.append(item)
            elif verdict not in ([], [False]):
                raise Unsure("where")
        return kept

    return where


def _exists(params: list) -> Node:
    if not params:
        return lambda focus, this, env: [bool(focus)]
    where = _where(params)
    return lambda focus, this, env: [bool(where(focus, this, env))]


def _of_type(params: list) -> Node:
    if len(params) != 1:
        raise Unsupported("ofType")
    name = params[0].get("text") or ""
    if not re.fullmatch(r"[A-Z][A-Za-z]*", name):
        raise Unsupported(name)  # a primitive or a namespaced type

    def of_type(focus, this, env):
        out = []
        for item in focus:
            if not isinstance(item, dict) or "resourceType" not in item:
                raise Unsure("ofType")  # a datatype's type is the model's to say
            if item["resourceType"] == name:
                out.append(item)
        return out

    return of_type


def _string_test(test: Callable[[str, str], bool]) -> Callable[[list], Node]:
    def build(params: list) -> Node:
        if len(params) != 1:
            raise Unsupported("string function")
        argument = _compile(params[0])

        def call(focus, this, env):
            if not focus:
                return []
            subject = _single(focus, str)
            [other] = _single_list(argument(focus, this, env), str) or [None]
            return [] if other is None else [test(subject, other)]

        return call

    return build


def _string_map(fn: Callable[[str], str]) -> Callable[[list], Node]:
    return lambda params: _no_params(
        params, lambda focus: [fn(_single(focus, str))] if focus else []
    )


def _single(focus: list, kind: type) -> Any:
    if (
        len(focus) != 1
        or not isinstance(focus[0], kind)
        or isinstance(focus[0], bool) != (kind is bool)
    ):
        raise Unsure("a single value is needed")
    return focus[0]


def _single_list(values: list, kind: type) -> list:
    return [_single(values, kind)] if values else []


_FUNCTIONS: dict[str, Callable[[list], Node]] = {
    "where": _where,
    "exists": _exists,
    "ofType": _of_type,
    "empty": lambda p: _no_params(p, lambda focus: [not focus]),
    "count": lambda p: _no_params(p, lambda focus: [len(focus)]),
    "first": lambda p: _no_params(p, lambda focus: focus[:1]),
    "not": lambda p: _no_params(p, _negate),
    # fhirpathpy answers false for an empty string, whatever the prefix: so does this.
    "startsWith": _string_test(
        lambda subject, prefix: bool(subject) and subject.startswith(prefix)
    ),
    "endsWith": _string_test(lambda subject, suffix: bool(subject) and subject.endswith(suffix)),
    "contains": _string_test(lambda subject, part: part in subject),
    "lower": _string_map(str.lower),
    "upper": _string_map(str.upper),
}


def _negate(focus: list) -> list:
    value = _truth(focus)
    return [] if value is None else [not value]


# --- operators


def _operands(ast: dict) -> tuple[Node, Node, str]:
    left, right = _children(ast)
    [operator] = ast.get("terminalNodeText") or [""]
    return _compile(left), _compile(right), operator


def _scalar(values: list) -> Any:
    """The one primitive of a collection, for a comparison; Unsure for anything fhirpathpy may
    read another way (a date, a complex value, several values)."""
    if len(values) != 1:
        raise Unsure("a single value is needed")
    value = values[0]
    kind = type(value)
    if kind is Decimal:  # an exact decimal (1.50) compares as the float literals here do
        return float(value)
    if kind is str:
        if value[:1].isdigit() and _TEMPORAL.match(value):
            raise Unsure("typed value")
    elif kind is dict or kind is list:
        raise Unsure("typed value")
    return value


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return True  # both numbers


def _equality(ast: dict) -> Node:
    left, right, operator = _operands(ast)
    if operator not in ("=", "!="):
        raise Unsupported(operator)  # ~ and !~ (equivalence)

    def equal(focus, this, env):
        a, b = left(focus, this, env), right(focus, this, env)
        if not a or not b:
            return []
        x, y = _scalar(a), _scalar(b)
        if not _same_kind(x, y):
            raise Unsure("values of two kinds")
        return [(x == y) == (operator == "=")]

    return equal


_ORDER = {
    "<": lambda x, y: x < y,
    ">": lambda x, y: x > y,
    "<=": lambda x, y: x <= y,
    ">=": lambda x, y: x >= y,
}


def _inequality(ast: dict) -> Node:
    left, right, operator = _operands(ast)
    compare = _ORDER[operator]

    def order(focus, this, env):
        a, b = left(focus, this, env), right(focus, this, env)
        if not a or not b:
            return []
        x, y = _scalar(a), _scalar(b)
        if isinstance(x, bool) or isinstance(y, bool) or not _same_kind(x, y):
            raise Unsure("values of two kinds")
        return [compare(x, y)]

    return order


def _truth(values: list) -> bool | None:
    if not values:
        return None
    if len(values) == 1 and isinstance(values[0], bool):
        return values[0]
    raise Unsure("a boolean is needed")


def _and(ast: dict) -> Node:
    left, right, _ = _operands(ast)

    def both(focus, this, env):
        a, b = _truth(left(focus, this, env)), _truth(right(focus, this, env))
        if a is False or b is False:
            return [False]
        return [True] if a and b else []

    return both


def _or(ast: dict) -> Node:
    left, right, operator = _operands(ast)
    if operator != "or":
        raise Unsupported(operator)  # xor

    def either(focus, this, env):
        a, b = _truth(left(focus, this, env)), _truth(right(focus, this, env))
        if a or b:
            return [True]
        return [False] if a is False and b is False else []

    return either


def _union(ast: dict) -> Node:
    left, right, _ = _operands(ast)

    def union(focus, this, env):
        out: list = []
        for value in [*left(focus, this, env), *right(focus, this, env)]:
            _scalar([value])
            if not any(_same_kind(value, seen) and value == seen for seen in out):
                out.append(value)
        return out

    return union


def _membership(ast: dict) -> Node:
    left, right, operator = _operands(ast)
    if operator == "contains":
        left, right = right, left

    def member(focus, this, env):
        a, b = left(focus, this, env), right(focus, this, env)
        if not a:
            return []
        x = _scalar(a)
        return [any(_same_kind(x, _scalar([y])) and x == y for y in b)]

    return member


_HANDLERS: dict[str, Callable[[dict], Node]] = {
    "TermExpression": _only_child,
    "InvocationTerm": _only_child,
    "ParenthesizedTerm": _only_child,
    "LiteralTerm": _literal,
    "ExternalConstantTerm": _variable,
    "InvocationExpression": _invocation_expression,
    "MemberInvocation": _member,
    "FunctionInvocation": _function,
    "ThisInvocation": _this,
    "EqualityExpression": _equality,
    "InequalityExpression": _inequality,
    "AndExpression": _and,
    "OrExpression": _or,
    "UnionExpression": _union,
    "MembershipExpression": _membership,
}
