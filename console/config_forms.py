"""A Django form built from a pydantic config schema: a transport's, or a channel source's.

The schema says it all. Each field's type picks its input: text, URL, number, checkbox, a select
for a ``Literal`` or an ``Enum``, a password input for a secret, a JSON textarea for dicts, lists
and anything else; its title and description are the label and help, its default the initial
value, its constraints (``ge``, ``le``, ``min_length`` ...) the browser's hints. A nested model is
a group of fields: an optional one (``oauth2: OAuth2 | None``) is switched on and off, a
discriminated union (``auth: NoAuth | BearerAuth | BasicAuth``) is a select of its variants, each
with its own fields.

Field names are pydantic's error locations joined by ``__`` (``auth__bearer__token``), so each
validation error is shown next to the field it names. Validation is the call the REST API makes
(``channels_app.destinations.checked_config``): the page and the API accept the same configs.

Secrets are write-only: a password input that never renders the stored value; left blank, the
stored value is kept (``channels_app.sealing.merge_config``); an optional one can be removed.
"""

from __future__ import annotations

import enum
import json
import re
import types
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import lru_cache
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from django import forms
from django.forms.fields import InvalidJSONInput
from pydantic import AnyUrl, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from adapters.codecs.bounded_json import BoundedDecoder
from adapters.registry import ConfigError, transport_class
from channels_app.destinations import checked_config
from channels_app.sealing import SECRET_MARKER
from channels_app.sources import SCHEMAS, checked_source_config
from console.forms import BootstrapForm, FloatField

SEP = "__"
STORED = "stored — leave blank to keep"
CLEAR = "clear"  # suffix of the checkbox that removes a stored optional secret

# Words spelled their own way in labels made from field names.
WORDS = {
    "url": "URL",
    "id": "ID",
    "tls": "TLS",
    "ca": "CA",
    "ack": "ACK",
    "oauth2": "OAuth2",
    "fhir": "FHIR",
    "http": "HTTP",
    "mllp": "MLLP",
    "s": "(s)",
    "ip": "IP",
    "ips": "IPs",
}


def humanize(key: str) -> str:
    words = [WORDS.get(w, w) for w in key.split("_") if w]
    if words and words[0] == words[0].lower():
        words[0] = words[0].capitalize()
    return " ".join(words)


# --- the schema as a tree of nodes ------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One input: ``kind`` is text, url, int, float, bool, choice, secret or json."""

    key: str  # the key in its parent's dict
    name: str  # the form field's name: pydantic's error location joined by SEP
    info: FieldInfo
    kind: str
    nullable: bool
    conditional: bool  # inside an optional group or a union's variant
    choices: tuple = ()  # the values of a Literal or Enum
    limits: tuple = ()  # annotated_types constraints (Ge, Le, MinLen ...)


@dataclass(frozen=True)
class Group:
    """A nested model; ``optional`` when it may be None (then a switch turns it on)."""

    key: str
    name: str
    info: FieldInfo
    optional: bool
    children: tuple


@dataclass(frozen=True)
class Variants:
    """A discriminated union of models: a select of tags, each tag with its model's fields."""

    key: str
    name: str
    info: FieldInfo
    discriminator: str
    nullable: bool
    conditional: bool
    tags: dict[str, Any] = dc_field(default_factory=dict)  # str(tag) -> the tag's value
    variants: dict[str, tuple] = dc_field(default_factory=dict)  # str(tag) -> its nodes

    @property
    def tag_name(self) -> str:
        return f"{self.name}{SEP}{self.discriminator}"


Node = Leaf | Group | Variants


@lru_cache(maxsize=32)
def schema_nodes(model: type[BaseModel]) -> tuple[Node, ...]:
    """The form's shape for a config model (the same for every form of that transport)."""
    return _nodes(model, "", conditional=False)


def _nodes(model: type[BaseModel], prefix: str, *, conditional: bool, skip: str = "") -> tuple:
    return tuple(
        _node(key, info, prefix + key, conditional)
        for key, info in model.model_fields.items()
        if key != skip
    )


def _node(key: str, info: FieldInfo, name: str, conditional: bool) -> Node:
    inner, nullable, limits = _unwrap(info.annotation)
    limits = (*info.metadata, *limits)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    # (A URL's user info and header values are secrets too, shown as the marker in their input.)
    if extra.get("secret") is True or _is(inner, SecretStr):
        return Leaf(key, name, info, "secret", nullable, conditional)
    if isinstance(inner, tuple) and isinstance(info.discriminator, str):
        node = Variants(key, name, info, info.discriminator, nullable, conditional)
        for model in inner:
            for tag in get_args(_unwrap(model.model_fields[node.discriminator].annotation)[0]):
                node.tags[str(tag)] = tag
                node.variants[str(tag)] = _nodes(
                    model, f"{name}{SEP}{tag}{SEP}", conditional=True, skip=node.discriminator
                )
        return node
    if _is(inner, BaseModel):
        children = _nodes(inner, name + SEP, conditional=conditional or nullable)
        return Group(key, name, info, nullable, children)
    if get_origin(inner) is Literal:
        return Leaf(key, name, info, "choice", nullable, conditional, get_args(inner))
    if _is(inner, enum.Enum):
        values = tuple(member.value for member in inner)
        return Leaf(key, name, info, "choice", nullable, conditional, values)
    kind = next((k for t, k in SCALARS if _is(inner, t)), "json")
    return Leaf(key, name, info, kind, nullable, conditional, limits=limits)


# bool before int: a bool is an int in Python.
SCALARS = (
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (AnyUrl, "url"),
    (str, "text"),
    (PurePath, "text"),  # a file or directory path, typed as text
)


def _is(kind: Any, base: type) -> bool:
    return isinstance(kind, type) and issubclass(kind, base)


def _unwrap(annotation: Any) -> tuple[Any, bool, tuple]:
    """(the type, whether None is allowed, Annotated constraints); a union of several types
    comes back as a tuple of them."""
    limits: tuple = ()
    if get_origin(annotation) is Annotated:
        annotation, *metadata = get_args(annotation)
        limits = tuple(metadata)
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(get_args(annotation))
        if len(members) == 1:
            inner, inner_nullable, inner_limits = _unwrap(members[0])
            return inner, nullable or inner_nullable, (*limits, *inner_limits)
        return tuple(members), nullable, limits
    return annotation, False, limits


def _default(info: FieldInfo) -> Any:
    value = info.get_default(call_default_factory=True)
    return None if value is PydanticUndefined else to_jsonable_python(value)


# --- the form ---------------------------------------------------------------------------------


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows its value indented; too deep a value is invalid JSON."""

    def __init__(self, **kwargs):
        super().__init__(decoder=BoundedDecoder, **kwargs)

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value
        if value is None:
            return ""  # blank: nothing set (null)
        return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass
class Item:
    """What the template renders (``kind``): a field; a group of items, with its switch when
    it is optional; or a union's select with each variant's items."""

    kind: str  # "field", "group", "variants"
    node: Node
    field: forms.BoundField | None = None  # the field, the group's switch, the union's select
    clear: forms.BoundField | None = None  # a stored optional secret's "remove" checkbox
    children: list[Item] = dc_field(default_factory=list)
    variants: list[Variant] = dc_field(default_factory=list)

    @property
    def label(self) -> str:
        return self.node.info.title or humanize(self.node.key)

    @property
    def help(self) -> str:
        return self.node.info.description or ""

    @property
    def on(self) -> bool:
        """An optional group's switch as submitted (or as stored)."""
        return self.field is None or bool(self.field.value())


@dataclass
class Variant:
    tag: str
    children: list[Item]
    select: forms.BoundField

    @property
    def on(self) -> bool:
        return str(self.select.value() or "") == self.tag


class SchemaForm(BootstrapForm):
    """A config described by pydantic schemas, as form fields. After is_valid(), ``config`` is
    what ``check`` made of the submitted values (what the API would store for the same)."""

    def __init__(
        self,
        nodes: tuple[Node, ...],
        data=None,
        *,
        current: dict | None = None,
        stored: dict | None = None,
        prefix: str = "config",
    ) -> None:
        """``current``: the object's public config (secrets as the marker), None for a new one;
        ``stored``: its stored config, merged under what is submitted."""
        super().__init__(data, prefix=prefix)
        self.nodes = nodes
        self.stored = stored
        self.current = current or {}
        self.stored_secrets: set[str] = set()
        self.anchors: dict[str, str] = {}  # a group's location -> the field showing its errors
        self.config: dict | None = None
        self.items = self._add(self.nodes, current or {})
        self.style()

    # Building: one Django field per leaf, a switch per optional group, a select per union.

    def _add(self, nodes, values: Any) -> list[Item]:
        values = values if isinstance(values, dict) else {}
        items = []
        for node in nodes:
            value = values[node.key] if node.key in values else _default(node.info)
            if isinstance(node, Leaf):
                self.fields[node.name] = self._field(node, value)
                item = Item("field", node, self[node.name])
                if node.name in self.stored_secrets and node.nullable:
                    clear = node.name + SEP + CLEAR
                    self.fields[clear] = forms.BooleanField(
                        required=False, label="Remove the stored value"
                    )
                    item.clear = self[clear]
            elif isinstance(node, Group):
                item = Item("group", node)
                if node.optional:
                    self.fields[node.name] = forms.BooleanField(
                        required=False, initial=value is not None, label=f"Use {item.label}"
                    )
                    self.fields[node.name].widget.attrs["data-controls"] = ""
                    self.anchors[node.name] = node.name
                    item.field = self[node.name]
                item.children = self._add(node.children, value)
            else:
                item = self._add_variants(node, value)
            items.append(item)
        return items

    def _add_variants(self, node: Variants, value: Any) -> Item:
        current = value.get(node.discriminator) if isinstance(value, dict) else None
        choices = [(tag, tag) for tag in node.tags]
        if node.nullable:
            choices.insert(0, ("", "—"))
        self.fields[node.tag_name] = forms.ChoiceField(
            choices=choices,
            initial="" if current is None else str(current),
            required=not node.nullable and not node.conditional,
            label=node.info.title or humanize(node.key),
            help_text=node.info.description or "",
        )
        self.fields[node.tag_name].widget.attrs["data-controls"] = ""
        self.anchors[node.name] = node.tag_name
        select = self[node.tag_name]
        item = Item("variants", node, select)
        for tag, nodes in node.variants.items():
            self.anchors[f"{node.name}{SEP}{tag}"] = node.tag_name
            chosen = current is not None and str(current) == tag
            item.variants.append(Variant(tag, self._add(nodes, value if chosen else {}), select))
        return item

    def _field(self, leaf: Leaf, value: Any) -> forms.Field:
        info = leaf.info
        label = info.title or humanize(leaf.key)
        help_text = info.description or ""
        required = info.is_required() and not leaf.nullable and not leaf.conditional
        attrs: dict[str, Any] = {}
        if leaf.kind == "secret":
            stored = value == SECRET_MARKER
            if stored:
                self.stored_secrets.add(leaf.name)
                attrs["placeholder"] = STORED
            widget = forms.PasswordInput(
                render_value=False, attrs={**attrs, "autocomplete": "new-password"}
            )
            field = forms.CharField(
                required=required and not stored, strip=False, widget=widget, label=label
            )
            field.stored = stored
        elif leaf.kind == "bool":
            field = forms.BooleanField(required=False, initial=bool(value))
        elif leaf.kind == "choice":
            choices = [(str(c), str(c)) for c in leaf.choices]
            if leaf.nullable:
                choices.insert(0, ("", "—"))
            field = forms.ChoiceField(
                choices=choices, required=required, initial=None if value is None else str(value)
            )
        elif leaf.kind == "json":
            field = PrettyJSONField(
                required=required,
                initial=value,
                widget=forms.Textarea(attrs={"rows": 4, "class": "font-monospace"}),
            )
            help_text = help_text or JSON_HELP.get(get_origin(_unwrap(info.annotation)[0]), "JSON.")
        else:
            field = self._scalar(leaf, value, required)
        field.label = label
        field.help_text = help_text
        return field

    def _scalar(self, leaf: Leaf, value: Any, required: bool) -> forms.Field:
        attrs = {}
        for limit in leaf.limits:
            for name, attr in LIMIT_ATTRS.items():
                if hasattr(limit, name) and isinstance(limit, annotated_types.BaseMetadata):
                    attrs[attr] = getattr(limit, name)
        if leaf.kind == "int":
            return forms.IntegerField(
                required=required, initial=value, widget=forms.NumberInput(attrs)
            )
        if leaf.kind == "float":
            return FloatField(
                required=required, initial=value, widget=forms.NumberInput({**attrs, "step": "any"})
            )
        widget = forms.URLInput(attrs) if leaf.kind == "url" else forms.TextInput(attrs)
        return forms.CharField(required=required, initial=value, widget=widget)

    # Validating: assemble the config dict, then the one validation the API makes too.

    def check(self, submitted: dict) -> dict:
        """The config to store for ``submitted``; ConfigError naming each field that is wrong."""
        raise NotImplementedError

    def clean(self):
        data = super().clean()
        submitted = self._assemble(self.nodes, data, self.current)
        try:
            self.config = self.check(submitted)
        except ConfigError as exc:
            self.config = None
            for error in exc.errors or ({"loc": (), "msg": str(exc)},):
                name, message = self.place(error)
                if name is None or name not in self.errors:  # a type error already said it
                    self.add_error(name, message)
        return data

    def place(self, error: dict) -> tuple[str | None, str]:
        """The field a pydantic error names (its innermost one that is on the form), or None
        for the form as a whole; and the message to show."""
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = tuple(str(part) for part in error["loc"])
        while loc:
            name = SEP.join(loc)
            if name in self.fields:
                return name, message
            if name in self.anchors:
                return self.anchors[name], message
            loc = loc[:-1]
        # A model-level check often starts with the field it is about ("template.a: ...").
        head = re.match(r"([A-Za-z_]\w*)[.:\[ ]", message)
        if head and head.group(1) in self.fields:
            return head.group(1), message
        return None, message

    def _assemble(self, nodes, data: dict, current: Any) -> dict:
        """The config the form's data describes. ``current`` (the stored config, public) keeps
        its shape: a default it leaves out stays out, so a save that changes nothing stores
        (and audits) nothing new, and a new destination stores only what differs."""
        current = current if isinstance(current, dict) else {}
        out: dict[str, Any] = {}
        for node in nodes:
            inner = current.get(node.key)
            if isinstance(node, Group):
                if node.optional and not data.get(node.name):
                    out[node.key] = None
                else:
                    out[node.key] = self._assemble(node.children, data, inner)
            elif isinstance(node, Variants):
                tag = data.get(node.tag_name)
                if tag in node.variants:
                    same = isinstance(inner, dict) and str(inner.get(node.discriminator)) == tag
                    chosen = self._assemble(node.variants[tag], data, inner if same else {})
                    out[node.key] = {node.discriminator: node.tags[tag], **chosen}
                elif node.nullable and tag == "":
                    out[node.key] = None
            elif node.name in data:  # not there: its type was wrong, and it says so
                self._put(out, node, data)
            implicit = node.key not in current and node.key in out
            if implicit and out[node.key] == _default(node.info):
                del out[node.key]
        return out

    def _put(self, out: dict, leaf: Leaf, data: dict) -> None:
        value = data[leaf.name]
        if leaf.kind == "secret":
            if data.get(leaf.name + SEP + CLEAR):
                return  # left out: the stored value goes, the default (None) applies
            if value:
                out[leaf.key] = value
            elif leaf.name in self.stored_secrets or leaf.nullable:
                out[leaf.key] = None  # blank keeps the stored value (merge_config)
            return  # blank, nothing stored, needed: left out, so pydantic says it is required
        if leaf.kind == "bool":
            out[leaf.key] = bool(value)
        elif value in (None, ""):
            if leaf.nullable:
                out[leaf.key] = None
            # else left out: the default applies, or pydantic says it is required
        elif leaf.kind == "choice":
            out[leaf.key] = {str(c): c for c in leaf.choices}[value]
        else:
            out[leaf.key] = value


class ConfigForm(SchemaForm):
    """One transport's config (merged over ``stored``, validated, sealed), as the API stores it."""

    def __init__(self, transport: str, data=None, **kwargs) -> None:
        self.transport = transport
        super().__init__(schema_nodes(transport_class(transport).Config), data, **kwargs)

    def check(self, submitted: dict) -> dict:
        return checked_config(self.transport, submitted, self.stored)


class SourceForm(SchemaForm):
    """A channel source's config, built from its source type's schemas; the API's validation."""

    def __init__(self, source_type: str, data=None, *, channel_id=None, **kwargs) -> None:
        self.source_type = source_type
        self.channel_id = channel_id
        nodes = tuple(n for schema in SCHEMAS.get(source_type, ()) for n in schema_nodes(schema))
        super().__init__(nodes, data, prefix="source", **kwargs)

    def check(self, submitted: dict) -> dict:
        return checked_source_config(
            self.source_type, submitted, self.stored, channel_id=self.channel_id
        )


JSON_HELP = {
    dict: 'A JSON object, e.g. {"Name": "value"}.',
    list: 'A JSON list, e.g. ["a", "b"].',
    tuple: 'A JSON list, e.g. ["a", "b"].',
}

# annotated_types constraint attribute -> the HTML attribute hinting it to the browser.
LIMIT_ATTRS = {
    "ge": "min",
    "gt": "min",
    "le": "max",
    "lt": "max",
    "min_length": "minlength",
    "max_length": "maxlength",
}
