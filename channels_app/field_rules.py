"""A channel's analyst field rules for HL7 v2: checked on save, compiled once, applied after the
built-in map in the process stage and the dry run alike.

``Channel.mapping`` is ``{"rules": [...], "tables": {"name": {"code": "value"}}}`` (rules as
`adapters.mapping.field_rules` describes them). A mapping is compiled once per distinct content
in a process (cached by its canonical text, so a new version compiles once), and read once per
channel per batch; per-message work is only the rules themselves.
"""

from __future__ import annotations

import csv
import io
import json
from functools import lru_cache
from typing import Any

from adapters.codecs import hl7v2
from adapters.mapping.field_rules import RuleError, RuleSet, compile_rules
from adapters.mapping.result import MappingError
from adapters.mapping.v2_rules import apply_after_map
from adapters.mapping.validation import validate
from channels_app.models import Channel, Message

MAPPING_KEYS = ("rules", "tables")
EMPTY = RuleSet(())


class MappingRefused(ValueError):
    """A mapping that cannot be saved; says which rule (0-based ``index``) and which part."""

    def __init__(self, reason: str, *, index: int | None = None, part: str = "") -> None:
        super().__init__(reason)
        self.index = index
        self.part = part

    def as_dict(self) -> dict[str, Any]:
        return {"detail": str(self), "rule": self.index, "part": self.part}


def checked_mapping(mapping: Any) -> dict[str, Any]:
    """``mapping`` as it is stored (both keys present) once it compiles; MappingRefused naming
    the key, table, or rule and part at fault."""
    if mapping in (None, ""):
        mapping = {}
    if not isinstance(mapping, dict):
        raise MappingRefused('must be an object: {"rules": [...], "tables": {...}}')
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise MappingRefused(f"unknown key {unknown[0]!r} (allowed: rules, tables)", part="mapping")
    rules = mapping.get("rules") or []
    tables = mapping.get("tables") or {}
    if not isinstance(rules, list):
        raise MappingRefused("rules: must be a list of rule objects", part="rules")
    _check_tables(tables)
    try:
        compile_rules(rules, tables=tables)
    except RuleError as exc:
        raise MappingRefused(str(exc), index=exc.index, part=exc.part or "") from None
    return {"rules": rules, "tables": tables}


def stored(mapping: Any) -> dict[str, Any]:
    """A stored mapping with both keys, as it is (not compiled: it shows even if a change to the
    rule engine made it invalid, so it can be fixed)."""
    mapping = mapping if isinstance(mapping, dict) else {}
    return {"rules": mapping.get("rules") or [], "tables": mapping.get("tables") or {}}


def _check_tables(tables: Any) -> None:
    if not isinstance(tables, dict):
        raise MappingRefused(
            "tables: must map a table name to its {code: value} rows", part="tables"
        )
    for name, rows in tables.items():
        if not name.strip():
            raise MappingRefused("tables: a table needs a name", part="tables")
        if not isinstance(rows, dict) or not all(isinstance(v, str) for v in rows.values()):
            raise MappingRefused(
                f"tables.{name}: must map each code to a text value", part=f"tables.{name}"
            )


def compiled(mapping: dict[str, Any] | None) -> RuleSet:
    """The compiled rules of a stored mapping (the empty set when it has none)."""
    if not mapping or not mapping.get("rules"):
        return EMPTY
    return _compiled(json.dumps(mapping, sort_keys=True))


@lru_cache(maxsize=128)
def _compiled(text: str) -> RuleSet:
    mapping = json.loads(text)
    return compile_rules(mapping["rules"], tables=mapping.get("tables") or {})


class ChannelRules:
    """The field rules of the channels in one batch, read with one query (a mapping that no
    longer compiles, after a code change, is remembered as its error)."""

    def __init__(self, found: dict[int, dict | None] | None = None) -> None:
        self._mappings: dict[int, Any] = dict(found or {})
        self._rules: dict[int, RuleSet | RuleError] = {}

    @classmethod
    def load(cls, channel_ids: set[int]) -> ChannelRules:
        rows = Channel.objects.filter(pk__in=channel_ids).values_list("pk", "mapping")
        return cls(dict(rows))

    def get(self, channel_id: int) -> RuleSet:
        if channel_id not in self._rules:
            if channel_id not in self._mappings:
                self._mappings |= dict(
                    Channel.objects.filter(pk=channel_id).values_list("pk", "mapping")
                )
            try:
                self._rules[channel_id] = compiled(self._mappings.get(channel_id))
            except RuleError as exc:
                self._rules[channel_id] = exc
        found = self._rules[channel_id]
        if isinstance(found, RuleError):
            raise found
        return found


def apply(message: Message, parsed: hl7v2.Message, rules: RuleSet) -> None:
    """Rewrite ``message.canonical`` with the channel's rules and add their issues; a required
    rule without its value, or a Bundle the rules made invalid, stops the message."""
    bundle, found = apply_after_map(rules, parsed, message.canonical)
    message.canonical = bundle
    message.issues = list(message.issues or []) + [rule_issue(i) for i in found]
    blocking = next((i for i in found if i.blocking), None)
    if blocking is not None:
        where = " → ".join(p for p in (blocking.source, blocking.target) if p)
        message.record_error("map", MappingError(f"{blocking.rule}: {blocking.reason}"), where)
        return
    try:
        validate(bundle)
    except MappingError as exc:
        message.record_error("validate", exc, exc.target, f"after the field rules: {exc}")


def rule_issue(issue) -> dict[str, str]:
    """A rule's issue as the message keeps issues, with the rule it came from."""
    from channels_app.pipeline.process import issue_dict

    return {**issue_dict(issue.as_conversion_issue()), "rule": issue.rule}


class BadTable(ValueError):
    """A lookup table upload that cannot be read; says which line."""


def table_from_csv(text: str) -> dict[str, str]:
    """Rows ``code,value`` (a ``code,value`` header is optional) as a lookup table."""
    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if any(c.strip() for c in r)]
    if not rows:
        raise BadTable("the file has no rows: give one code,value per line")
    first = 1
    if [c.strip().lower() for c in rows[0]] == ["code", "value"]:
        rows, first = rows[1:], 2
    table: dict[str, str] = {}
    for line, row in enumerate(rows, start=first):
        if len(row) != 2:
            raise BadTable(f"row {line}: expected 2 columns (code,value), found {len(row)}")
        code, value = row[0].strip(), row[1].strip()
        if not code:
            raise BadTable(f"row {line}: the code is empty")
        if code in table:
            raise BadTable(f"row {line}: code {code!r} is listed twice")
        table[code] = value
    return table
