"""Custom JSON as a source format: a sender's own JSON, turned into canonical FHIR R4 by the
analyst's map (a channel's ``json_map``).

The map is data::

    {
      "resources": [                              # required: what it builds, one of each
        "Patient",
        {"type": "Encounter", "when": "%input.visit.exists()"}   # only when this is true
      ],
      "rules": [                                  # required: field rules, read from %input
        {"name": "mrn", "source": "%input.patient.mrn",
         "target": "Patient.identifier[0].value", "required": true},
        {"target": "Patient.identifier[0].system",
         "transforms": [{"op": "default", "value": "urn:oid:2.16.840.1.113883.3.1"}]},
        {"source": "%input.patient.dob", "target": "Patient.birthDate",
         "transforms": [{"op": "date", "from": "%d/%m/%Y", "to": "fhir"}]},
        {"source": "%fullUrl_Patient", "target": "Encounter.subject.reference"}
      ],
      "tables": {"sex": {"M": "male", "F": "female"}},  # optional: lookup tables by name
      "key": "%input.orderId"                     # optional: what makes two documents the same
    }

Rules are the analyst field rules of `adapters.mapping.field_rules` (targets, selectors,
transforms, ``required``), with two FHIRPath variables: ``%input`` is the document
(``%input.patient.mrn``, ``%input.items.where(kind = 'lab').code``) and ``%fullUrl_<Type>`` the
fullUrl of a declared resource, for references between them.

The Bundle is a transaction with one entry per declared resource. Its fullUrl is a uuid5 of the
type and the document's key (the value of ``key``, else a digest of the document), so the same
document always gives the same ids. After the rules, each entry gets the request the v2 maps use:
``PUT Type?identifier=system|value`` on its first identifier, or on one derived from its fullUrl
when no rule gave it one, so a re-delivery updates instead of duplicating. A declared resource no
rule wrote to is left out (with an issue); one whose ``when`` (a FHIRPath on ``%input``) is not
true is left out as planned, its required rules then require nothing and a reference to it
(``%fullUrl_Encounter``) reads nothing.

`compile_json_map` checks the whole map once (`JsonMapError` names the part, and for a rule the
rule and its part). `to_bundle` returns the Bundle and the issues met; with ``check`` (the
pipeline's default) a required rule without a value raises `MapFailed` and a Bundle that is not
valid FHIR R4 raises the validator's MappingError, naming the path.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from adapters.codecs import bounded_json
from adapters.mapping.codesystems import URI_SYSTEM
from adapters.mapping.context import search_value, stable_uuid
from adapters.mapping.field_rules import (
    RuleError,
    RuleIssue,
    RuleSet,
    compile_rules,
    fhirpath_syntax_error,
    resource_elements,
)
from adapters.mapping.result import ConversionIssue, ConversionResult, MappingError
from adapters.mapping.validation import validate

# How the hub labels a stored custom JSON body (the sender posts it as application/json).
MEDIA_TYPE = "application/vnd.hl7hub.custom+json"
MAP_KEYS = ("resources", "rules", "tables", "key")
INPUT = "input"
FULL_URL = "fullUrl_"


class NotJson(ValueError):
    """A body that is not a JSON object or array; ``location`` says where reading stopped."""

    def __init__(self, reason: str, location: str = "") -> None:
        super().__init__(reason)
        self.location = location


class JsonMapError(RuleError):
    """A ``json_map`` that cannot be compiled. ``where`` is the place in the map
    (``resources[1]``, ``rules[2].source``); for a rule, ``index``, ``name``, ``part`` and
    ``path`` are those of its `RuleError`."""

    def __init__(self, reason: str, where: str = "", rule: RuleError | None = None) -> None:
        ValueError.__init__(self, f"json_map{'.' + where if where else ''}: {reason}")
        self.reason = reason
        self.where = where
        self.index = rule.index if rule else None
        self.name = rule.name if rule else None
        self.part = rule.part if rule else where
        self.path = rule.path if rule else None


class MapFailed(MappingError):
    """The map could not build a Bundle worth passing on: a required rule found no value, or no
    rule wrote anything. ``issues`` holds every issue met."""

    def __init__(self, reason: str, issues: list[ConversionIssue], **place: str) -> None:
        super().__init__(reason, **place)
        self.issues = issues


@dataclass(frozen=True, slots=True)
class JsonMap:
    """A compiled ``json_map``: compile once, apply to many documents."""

    resources: tuple[str, ...]
    rules: RuleSet
    key: Callable[..., list[Any]] | None
    # Per optional resource type: its ``when`` condition on the document.
    conditions: Mapping[str, Callable[..., list[Any]]]
    # Per resource type: whether its ``identifier`` repeats, None when it has none.
    identifier_repeats: Mapping[str, bool | None]


# ----------------------------------------------------------------------------------- reading


def read(raw: bytes) -> Any:
    """The document in ``raw``; NotJson with the reason when it is not a JSON object or array."""
    try:
        document = bounded_json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except bounded_json.JsonLimitError as exc:
        raise NotJson(f"not JSON the hub can read: {exc}")
    except UnicodeDecodeError as exc:
        raise NotJson(f"not JSON: the body is not UTF-8 text ({exc.reason})", f"byte {exc.start}")
    except json.JSONDecodeError as exc:
        raise NotJson(f"not JSON: {exc.msg}", f"line {exc.lineno} column {exc.colno}")
    if not isinstance(document, dict | list):
        raise NotJson(f"custom JSON must be an object or an array, not {type(document).__name__}")
    return document


def _no_constant(name: str) -> Any:
    raise NotJson(f"not JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400: no database or FHIR server could store it
        raise NotJson(f"not JSON the hub can store: {text} is too large a number")
    return number


# --------------------------------------------------------------------------------- compiling


def compile_json_map(spec: Any) -> JsonMap:
    """Validate and compile a ``json_map``; raises `JsonMapError` naming the part at fault."""
    if not isinstance(spec, Mapping):
        raise JsonMapError("must be an object with 'resources' and 'rules'")
    unknown = sorted(set(spec) - set(MAP_KEYS))
    if unknown:
        raise JsonMapError(f"unknown key (allowed: {', '.join(MAP_KEYS)})", unknown[0])
    resources, conditions, identifiers = _resources(spec.get("resources"))
    tables = spec.get("tables", {})
    if not isinstance(tables, Mapping) or not all(isinstance(t, Mapping) for t in tables.values()):
        raise JsonMapError('must map table names to tables, e.g. {"sex": {"M": "male"}}', "tables")
    if "rules" not in spec:
        raise JsonMapError("is required: the field rules that fill the resources", "rules")
    variables = (INPUT, *(FULL_URL + t for t in resources))
    try:
        rules = compile_rules(spec["rules"], tables=tables, variables=variables)
    except RuleError as exc:
        where = "rules" if exc.index is None else f"rules[{exc.index}]"
        raise JsonMapError(str(exc), where + (f".{exc.part}" if exc.part else ""), exc)
    if not len(rules):
        raise JsonMapError("is empty: give at least one rule", "rules")
    for rule in rules:
        rtype = rule.target.resource_type
        if rtype not in resources:
            error = RuleError(
                f"{rtype} is not among the declared resources ({', '.join(resources)})",
                index=rule.index,
                name=rule.name,
                part="target",
                path=rule.target.text,
            )
            raise JsonMapError(str(error), f"rules[{rule.index}].target", error)
    key = _input_path(spec["key"], "key", "%input.orderId") if "key" in spec else None
    return JsonMap(resources, rules, key, conditions, identifiers)


def _resources(
    value: Any,
) -> tuple[tuple[str, ...], dict[str, Callable[..., list[Any]]], dict[str, bool | None]]:
    if not isinstance(value, list) or not value:
        raise JsonMapError(
            'is required: a list of FHIR resource types, e.g. ["Patient", "Encounter"]',
            "resources",
        )
    conditions: dict[str, Callable[..., list[Any]]] = {}
    identifiers: dict[str, bool | None] = {}
    for i, item in enumerate(value):
        where = f"resources[{i}]"
        name = item.get("type") if isinstance(item, Mapping) else item
        if not isinstance(name, str):
            raise JsonMapError(
                "must be a FHIR resource type such as 'Patient', or an object such as"
                ' {"type": "Encounter", "when": "%input.visit.exists()"}',
                where,
            )
        if isinstance(item, Mapping):
            unknown = sorted(set(item) - {"type", "when"})
            if unknown:
                raise JsonMapError("unknown key (allowed: type, when)", f"{where}.{unknown[0]}")
            if "when" in item:
                example = "%input.visit.exists()"
                conditions[name] = _input_path(item["when"], f"{where}.when", example)
        if name in identifiers:
            raise JsonMapError(f"{name} is declared twice; a map builds one of each", where)
        try:
            elements = resource_elements(name)
        except ValueError as exc:
            raise JsonMapError(str(exc), where)
        identifiers[name] = elements.get("identifier")
    return tuple(identifiers), conditions, identifiers


def _input_path(text: Any, where: str, example: str) -> Callable[..., list[Any]]:
    """A FHIRPath on the document (``%input``), compiled and tried once."""
    import fhirpathpy
    from fhirpathpy.models import models

    if not isinstance(text, str) or not text.strip():
        raise JsonMapError(f"must be a FHIRPath on the document, e.g. {example}", where)
    problem = fhirpath_syntax_error(text)
    if problem:
        raise JsonMapError(f"FHIRPath syntax error {problem}", where)
    try:
        fn = fhirpathpy.compile(text, models["r4"])
        fn({}, {INPUT: {}})
    except Exception as exc:  # fhirpathpy raises bare Exceptions (unknown function, variable)
        raise JsonMapError(f"FHIRPath cannot be evaluated: {exc}", where)
    return fn


# ---------------------------------------------------------------------------------- mapping


def to_bundle(document: Any, compiled: JsonMap, *, check: bool = True) -> ConversionResult:
    """The transaction Bundle the map makes of ``document``, and the issues met.

    Without ``check`` nothing raises for data (the test bench shows what came out); with it, a
    required rule without a value or a Bundle left empty raises `MapFailed`, and an invalid
    Bundle the validator's MappingError (naming the resource and path).
    """
    issues: list[ConversionIssue] = []
    key = _document_key(document, compiled, issues)
    built = [t for t in compiled.resources if _wanted(t, document, compiled, issues)]
    # Each resource's stable id names it (its derived identifier, when it has no business one);
    # its fullUrl is another UUID derived from that id, as the v2 maps do (adapters.mapping.context):
    # a server that rewrites a fullUrl wherever it appears must leave the identifier alone.
    ids = {t: stable_uuid("json", t, key) for t in built}
    urls = {t: "urn:uuid:" + stable_uuid("entry", ids[t]) for t in built}
    derived = {urls[t]: "urn:uuid:" + ids[t] for t in built}
    skeleton = {
        "resourceType": "Bundle",
        "id": stable_uuid("Bundle", "json", key),
        "type": "transaction",
        "entry": [{"fullUrl": urls[t], "resource": {"resourceType": t}} for t in urls],
    }
    # A resource left out has no fullUrl: a reference to it reads nothing.
    variables = {INPUT: document, **{FULL_URL + t: urls.get(t, []) for t in compiled.resources}}
    bundle, rule_issues = compiled.rules.apply(None, skeleton, variables)
    # A required rule of a resource its `when` left out has nothing to require.
    rule_issues = [i for i in rule_issues if _resource_of(i.target) in urls]
    issues += [_issue(i) for i in rule_issues]
    entries = [_finish(e, compiled, issues, derived[e["fullUrl"]]) for e in bundle["entry"]]
    bundle["entry"] = [e for e in entries if e is not None]
    if not bundle["entry"]:
        del bundle["entry"]  # FHIR allows no empty arrays
    if check:
        blocking = next((i for i in rule_issues if i.blocking), None)
        if blocking is not None:
            reason = f"{blocking.rule}: {blocking.reason}"
            raise MapFailed(reason, issues, field=blocking.source, target=blocking.target)
        if "entry" not in bundle:
            raise MapFailed("no rule found a value in the document", issues, target="Bundle")
        validate(bundle)
    types = [e["resource"]["resourceType"] for e in bundle.get("entry", ())]
    return ConversionResult(bundle, issues, types)


def _wanted(rtype: str, document: Any, compiled: JsonMap, issues: list[ConversionIssue]) -> bool:
    condition = compiled.conditions.get(rtype)
    if condition is None:
        return True
    try:
        found = condition({}, {INPUT: document})
    except Exception as exc:  # fhirpathpy on data it cannot handle
        reason = f"its 'when' could not be evaluated ({exc}); it is left out"
        issues.append(ConversionIssue("", "", "", rtype, reason, "sender", "warning"))
        return False
    return bool(found) and found != [False]


def _resource_of(target: str) -> str:
    return _RESOURCE_TYPE.match(target)[0]


_RESOURCE_TYPE = re.compile(r"[A-Za-z]*")


def _document_key(document: Any, compiled: JsonMap, issues: list[ConversionIssue]) -> str:
    if compiled.key is not None:
        try:
            values = [v for v in compiled.key({}, {INPUT: document}) if v not in (None, "")]
        except Exception as exc:  # fhirpathpy on data it cannot handle
            values = []
            reason = f"the key could not be read ({exc}); ids derive from the document's content"
        else:
            reason = "the key has no value; ids derive from the document's content"
        if values and all(isinstance(v, str | int | float | Decimal) for v in values):
            return "key:" + "|".join(str(v) for v in values)
        issues.append(ConversionIssue("", "key", "", "Bundle", reason, "sender", "warning"))
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()


def _finish(
    entry: dict, compiled: JsonMap, issues: list[ConversionIssue], derived: str
) -> dict | None:
    """The entry with its conditional request (on ``derived``, its stable id, when no rule
    gave it a business identifier), or None for a resource no rule wrote to."""
    resource = entry["resource"]
    rtype = resource["resourceType"]
    if len(resource) == 1:
        issues.append(
            ConversionIssue(
                "",
                "",
                "",
                rtype,
                f"no rule gave the {rtype} a value; it is left out",
                "sender",
                "information",
            )
        )
        return None
    repeats = compiled.identifier_repeats.get(rtype)
    if repeats is None:  # a resource without identifiers: nothing to make the request conditional
        return {**entry, "request": {"method": "POST", "url": rtype}}
    current = resource.get("identifier")
    listed = current if isinstance(current, list) else [current] if current else []
    identity = next((i for i in listed if _searchable(i)), None)
    if identity is None:
        identity = {"system": URI_SYSTEM, "value": derived}
        resource = {**resource, "identifier": [*listed, identity] if repeats else identity}
    request = {"method": "PUT", "url": f"{rtype}?identifier={search_value(identity)}"}
    return {**entry, "resource": resource, "request": request}


def _searchable(identifier: Any) -> bool:
    # Anything else is left to the validator, which names its path.
    return (
        isinstance(identifier, dict)
        and isinstance(identifier.get("value"), str)
        and bool(identifier["value"])
        and isinstance(identifier.get("system", ""), str)
    )


def _issue(issue: RuleIssue) -> ConversionIssue:
    """A rule's issue in the pipeline's terms; ``field`` holds the source (``%input.dob``)."""
    return ConversionIssue(
        segment="",
        field=issue.source,
        value=issue.value or "",
        target=issue.target,
        reason=f"{issue.rule}: {issue.reason}",
        origin="sender" if issue.origin == "sender" else "map",
        severity="error",
    )
