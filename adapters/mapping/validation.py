"""Validate a Bundle against FHIR R4 as fhir.resources defines it (its R4B models, which match R4
for every resource the maps emit).

Two ways, one set of rules:

- `validate_full` builds the fhir.resources pydantic models. It costs ~0.1-0.3 ms per resource
  (a Python root validator runs for every nested element), ~6 ms for an ORU with 20 results:
  more than the whole conversion budget.
- `validate` (the default, what `convert` runs) walks the plain JSON once against a schema
  compiled from those same models: every element name (``extra="forbid"``), array or single,
  required elements (including primitive ones that may be carried by their ``_element``
  extension), choice groups (``value[x]``: at most one, or exactly one when required), no null
  in an array of complex elements, ``resourceType`` matching the expected model, and each
  primitive value checked by fhir.resources' own primitive type (regex, ranges, dates) through
  a pydantic TypeAdapter. A primitive's verdict depends only on its type and value, so it is
  cached. It is also a little stricter than the models where FHIR JSON is: empty objects and
  empty arrays are rejected (FHIR's ele-1).

The tests run both over every corpus Bundle and over random mutations of them: whatever
`validate` accepts, the models accept too.

A failure raises MappingError with origin "map" (a Bundle the map built is the map's fault),
naming the resource and the FHIR path: ``Observation.valueQuantity.value``.
"""

from __future__ import annotations

import importlib
import threading
import typing
from dataclasses import dataclass, field

from adapters.mapping.result import MappingError

PRIMITIVE, COMPLEX, RESOURCE, SKIP = range(4)
# The shapes the check takes a fast path for: a single primitive, complex element(s).
ONE_PRIMITIVE, ONE_COMPLEX, MANY_COMPLEX, OTHER = range(4)


def validate(bundle: dict) -> None:
    """Check ``bundle`` (a plain JSON dict); raises MappingError naming the resource and path."""
    try:
        _check_object(_model_for("Bundle"), bundle)
    except _Invalid as exc:
        parts = list(reversed(exc.path))
        raise _error(bundle, tuple(parts), exc.reason)


def validate_full(bundle: dict) -> None:
    """Validate with fhir.resources' pydantic models (slow; the reference `validate` follows)."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise _error(bundle, tuple(err.get("loc", ())), err.get("msg", str(exc)))
    except Exception as exc:  # fhir.resources itself fails on some inputs (KeyError, ...)
        raise MappingError(
            f"the Bundle is not valid FHIR R4: {type(exc).__name__}: {exc}",
            target="Bundle",
            origin="map",
        )


# ---------------------------------------------------------------------------- the schema


@dataclass(slots=True)
class _Field:
    key: str
    is_list: bool
    kind: int
    target: typing.Any = None  # _Primitive (PRIMITIVE) / model class (COMPLEX)
    model: _Model | None = None  # compiled lazily for COMPLEX
    shape: int = OTHER
    known: set[str] = field(default_factory=set)  # a PRIMITIVE's values found valid

    def __post_init__(self) -> None:
        if self.kind == PRIMITIVE:
            self.known = self.target.known
        if not self.is_list:
            self.shape = {PRIMITIVE: ONE_PRIMITIVE, COMPLEX: ONE_COMPLEX}.get(self.kind, OTHER)
        elif self.kind == COMPLEX:
            self.shape = MANY_COMPLEX


@dataclass(slots=True)
class _Model:
    name: str
    resource_type: str | None
    fields: dict[str, _Field] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    required_primitive: tuple[tuple[str, str], ...] = ()
    choice_of: dict[str, int] = field(default_factory=dict)  # key -> group index
    choices: tuple[tuple[tuple[str, ...], bool], ...] = ()
    needs_one_of: tuple[str, ...] = ()  # FHIRPrimitiveExtension: id or extension
    checks_after: bool = False  # whether any of the four above asks something


_MODELS: dict[type, _Model] = {}
_BY_NAME: dict[str, type] = {}


def _model_class(name: str) -> type:
    cls = _BY_NAME.get(name)
    if cls is None:
        from fhir.resources.R4B import get_fhir_model_class

        cls = get_fhir_model_class(name)
        _BY_NAME[name] = cls
    return cls


def _model_for(name: str) -> _Model:
    return _compile(_model_class(name))


_COMPILE_LOCK = threading.Lock()


def _compile(cls: type) -> _Model:
    """The compiled schema of ``cls``; other threads read `_MODELS` without the lock, so a model
    is published only once complete (element types are compiled lazily, never recursively here)."""
    model = _MODELS.get(cls)
    if model is not None:
        return model
    with _COMPILE_LOCK:
        model = _MODELS.get(cls)
        if model is None:
            model = _MODELS[cls] = _build(cls)
    return model


def _build(cls: type) -> _Model:
    has_resource = cls.has_resource_base()
    model = _Model(cls.__name__, cls.get_resource_type() if has_resource else None)
    instance = cls.model_construct()
    required = []
    for name, info in cls.model_fields.items():
        if name == "fhir_comments":
            continue
        key = info.alias or name
        is_list, kind, target = _classify(info.annotation)
        model.fields[key] = _Field(key, is_list, kind, target)
        if info.is_required():
            required.append(key)
    model.required = tuple(required)
    alias = {n: (i.alias or n) for n, i in cls.model_fields.items()}
    model.required_primitive = tuple(
        (alias[n], alias.get(ext, "") if ext else "") for n, ext in instance.get_required_fields()
    )
    groups = []
    for prefix, names in instance.get_one_of_many_fields().items():
        keys = tuple(alias[n] for n in names)
        extra = cls.model_fields[names[0]].json_schema_extra or {}
        groups.append((keys, extra.get("one_of_many_required") is True))
        for k in keys:
            model.choice_of[k] = len(groups) - 1
        del prefix
    model.choices = tuple(groups)
    if cls.__name__ == "FHIRPrimitiveExtension":
        model.needs_one_of = ("id", "extension")
    model.checks_after = bool(
        model.required
        or model.required_primitive
        or any(required for _, required in model.choices)
        or model.needs_one_of
    )
    return model


def _classify(annotation) -> tuple[bool, int, typing.Any]:
    """(is_list, kind, target) for a field annotation of the generated models."""
    inner = _strip_optional(annotation)
    is_list = typing.get_origin(inner) in (list, typing.List)  # noqa: UP006
    if is_list:
        inner = typing.get_args(inner)[0]
    get_klass = getattr(inner, "get_model_klass", None)
    if get_klass is not None:
        klass = get_klass()
        if klass.__name__ == "Resource":
            return is_list, RESOURCE, None
        return is_list, COMPLEX, klass
    return is_list, PRIMITIVE, _primitive(inner)


_PRIMITIVES: dict = {}


def _primitive(annotation) -> _Primitive:
    """One TypeAdapter (and one cache of valid values) per primitive type."""
    key = annotation
    try:
        hash(annotation)
    except TypeError:  # an unhashable annotation gets its own adapter
        key = object()
    prim = _PRIMITIVES.get(key)
    if prim is None:
        from pydantic import TypeAdapter

        prim = _PRIMITIVES[key] = _Primitive(TypeAdapter(annotation))
    return prim


def _strip_optional(annotation):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, _union_type()):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _union_type():
    import types

    return types.UnionType


# ----------------------------------------------------------------------------- the check


class _Invalid(Exception):
    def __init__(self, reason: str, path: list | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path if path is not None else []  # innermost first


def _check_object(model: _Model, data) -> None:
    # The hot loop of every conversion: kept flat on purpose (no function call for a primitive
    # already known to be valid, nor for stepping into a complex element).
    if type(data) is not dict:
        raise _Invalid(f"expected a JSON object for {model.name}")
    if not data:
        raise _Invalid(f"an empty {model.name} object (FHIR elements must have content)")
    fields = model.fields
    choice_of = model.choice_of
    chosen: dict[int, str] | None = None
    for key, value in data.items():
        spec = fields.get(key)
        if spec is None:
            if key == "resourceType" and model.resource_type:
                if value != model.resource_type:
                    raise _Invalid(f"resourceType {value!r}, expected {model.resource_type!r}")
                continue
            raise _Invalid(f"{key!r} is not an element of {model.name}", [key])
        if choice_of and key in choice_of:
            chosen = _choose(chosen, choice_of[key], key)
        shape = spec.shape
        if shape == ONE_PRIMITIVE:  # the commonest case first
            if type(value) is str and value in spec.known:
                continue
        elif shape == ONE_COMPLEX and type(value) is dict and value:
            try:
                _check_object(spec.model or _compile_field(spec), value)
            except _Invalid as exc:
                exc.path.append(key)
                raise
            continue
        elif shape == MANY_COMPLEX and type(value) is list and value:
            item_model = spec.model or _compile_field(spec)
            for i, item in enumerate(value):
                if type(item) is not dict:
                    break  # None and other faults: _check_value says which, in place
                try:
                    _check_object(item_model, item)
                except _Invalid as exc:
                    exc.path.append(i)
                    exc.path.append(key)
                    raise
            else:
                continue
        try:
            _check_value(spec, value)
        except _Invalid as exc:
            exc.path.append(key)
            raise
    if model.checks_after:
        _check_after(model, data, chosen)


def _choose(chosen: dict[int, str] | None, group: int, key: str) -> dict[int, str]:
    chosen = chosen if chosen is not None else {}
    if group in chosen:
        raise _Invalid(f"both {chosen[group]!r} and {key!r}: a choice takes one type", [key])
    chosen[group] = key
    return chosen


def _check_value(spec: _Field, value) -> None:
    """One element's value, past the fast paths of `_check_object`."""
    kind = spec.kind
    if spec.is_list:
        if type(value) is not list:
            raise _Invalid("expected an array")
        if not value:
            raise _Invalid("an empty array (FHIR arrays must have content)")
        if kind == PRIMITIVE:
            known = spec.known
            for i, item in enumerate(value):
                if item is not None and (type(item) is not str or item not in known):
                    try:
                        _check_primitive(spec.target, item)
                    except _Invalid as exc:
                        exc.path.append(i)
                        raise
            return
        model = (spec.model or _compile_field(spec)) if kind == COMPLEX else None
        for i, item in enumerate(value):
            try:
                if item is None:
                    raise _Invalid("null inside an array of complex elements")
                if model is not None:
                    _check_object(model, item)
                else:
                    _check_resource(item)
            except _Invalid as exc:
                exc.path.append(i)
                raise
    elif kind == PRIMITIVE:
        if value is None:
            raise _Invalid("null (leave the element out instead)")
        _check_primitive(spec.target, value)
    else:
        if type(value) is list:
            raise _Invalid("an array where a single value is expected")
        if value is None:
            raise _Invalid("null (leave the element out instead)")
        if kind == COMPLEX:
            _check_object(spec.model or _compile_field(spec), value)
        else:
            _check_resource(value)


def _check_after(model: _Model, data: dict, chosen: dict[int, str] | None) -> None:
    """What must be present: required elements, required choices, an extension's content."""
    for key in model.required:
        if key not in data:
            raise _Invalid(f"{key!r} is required in {model.name}", [key])
    for key, ext in model.required_primitive:
        if key not in data and (not ext or ext not in data):
            raise _Invalid(f"{key!r} is required in {model.name}", [key])
    for group, (keys, required) in enumerate(model.choices):
        if required and (chosen is None or group not in chosen):
            raise _Invalid(f"one of {', '.join(keys)} is required in {model.name}")
    if model.needs_one_of and not any(k in data for k in model.needs_one_of):
        raise _Invalid(f"{model.name} needs one of {', '.join(model.needs_one_of)}")


class _Primitive:
    """One primitive type of fhir.resources and the values already found valid for it. The
    verdict depends only on type and value, so caching it is exact."""

    __slots__ = ("adapter", "known", "known_other")

    LIMIT = 100_000

    def __init__(self, adapter) -> None:
        self.adapter = adapter
        self.known: set[str] = set()
        self.known_other: set = set()


def _check_primitive(prim: _Primitive, value) -> None:
    if type(value) is not str:
        if type(value) in (dict, list):
            raise _Invalid("an object or array where a primitive value is expected")
        if (type(value), value) in prim.known_other:
            return
    try:
        prim.adapter.validate_python(value)
    except Exception as exc:  # pydantic's ValidationError or the type's ValueError
        raise _Invalid(f"invalid value {value!r}: {_first_line(exc)}")
    if type(value) is str:
        if len(prim.known) > prim.LIMIT:
            prim.known.clear()
        prim.known.add(value)
    else:
        if len(prim.known_other) > prim.LIMIT:
            prim.known_other.clear()
        prim.known_other.add((type(value), value))


def _compile_field(spec: _Field) -> _Model:
    spec.model = _compile(spec.target)
    return spec.model


def _check_resource(value) -> None:
    if type(value) is not dict:
        raise _Invalid("expected a resource object")
    rtype = value.get("resourceType")
    if not isinstance(rtype, str):
        raise _Invalid("a resource without resourceType")
    try:
        model = _model_for(rtype)
    except (KeyError, ValueError, ImportError, AttributeError):
        raise _Invalid(f"unknown resourceType {rtype!r}")
    if model.resource_type is None:
        raise _Invalid(f"{rtype!r} is not a resource")
    _check_object(model, value)


def _first_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return errors()[0]["msg"]
        except (IndexError, KeyError, TypeError):
            pass
    return str(exc).splitlines()[0]


def _error(bundle: dict, loc: tuple, msg: str) -> MappingError:
    path = "Bundle"
    parts = list(loc)
    if (
        len(parts) >= 3
        and parts[0] == "entry"
        and isinstance(parts[1], int)
        and parts[2] == "resource"
    ):
        try:
            path = bundle["entry"][parts[1]]["resource"]["resourceType"]
        except (KeyError, IndexError, TypeError):
            path = None
        if not isinstance(path, str) or not path:
            path = f"Bundle.entry[{parts[1]}].resource"
        parts = parts[3:]
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else f".{p}"
    return MappingError(f"the Bundle is not valid FHIR R4: {msg}", target=path, origin="map")


def warm_up() -> None:
    """Compile the schemas of the resources the maps emit (a worker calls it at start)."""
    for name in (
        "Bundle",
        "Patient",
        "Encounter",
        "Observation",
        "DiagnosticReport",
        "Practitioner",
        "Organization",
        "Location",
    ):
        _model_for(name)
    importlib.import_module("fhir.resources.R4B.bundle")
