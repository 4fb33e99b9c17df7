"""Analyst field rules on top of the built-in HL7 v2 map.

`apply_after_map` runs a compiled `RuleSet` on the Bundle `convert` made and keeps each entry's
conditional request in step with the identifiers the rules left: the built-in map writes
``PUT Patient?identifier=system|value`` (or ``ifNoneExist``) from the resource's identity, so a
rule that rewrites that identifier must rewrite the condition too, or re-delivery would create a
duplicate instead of updating the record.
"""

from __future__ import annotations

from typing import Any

from adapters.codecs.hl7v2 import Message
from adapters.mapping.context import search_value
from adapters.mapping.field_rules import RuleIssue, RuleSet

CONDITION = "identifier="


def apply_after_map(
    rules: RuleSet, message: Message, bundle: dict[str, Any]
) -> tuple[dict[str, Any], list[RuleIssue]]:
    """The Bundle with ``rules`` applied (a new dict; ``bundle`` is left as it was), its
    conditional requests following the rewritten identifiers, and the rules' issues."""
    after, issues = rules.apply(message, bundle)
    before_entries = bundle.get("entry") or []
    after_entries = after.get("entry") or []
    if len(before_entries) == len(after_entries):
        after["entry"] = [
            _in_step(old, new) for old, new in zip(before_entries, after_entries, strict=True)
        ]
    return after, issues


def _in_step(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with its request's condition naming the identifier that took the place of the
    one the condition named in ``old`` (same position in the list; else the first one)."""
    if old.get("resource") is new.get("resource"):
        return new  # no rule wrote to this resource
    request = new.get("request")
    condition = _condition(request)
    if condition is None:
        return new
    before = old["resource"].get("identifier") or []
    after = new["resource"].get("identifier") or []
    position = next((i for i, ident in enumerate(before) if _search(ident) == condition), None)
    if position is None or not after:
        return new
    chosen = after[position] if position < len(after) else after[0]
    now = _search(chosen)
    if now is None or now == condition:
        return new
    return {**new, "request": _with_condition(request, now)}


def _condition(request: Any) -> str | None:
    if not isinstance(request, dict):
        return None
    text = request.get("ifNoneExist") or request.get("url", "").partition("?")[2]
    return text[len(CONDITION) :] if text.startswith(CONDITION) else None


def _search(identifier: Any) -> str | None:
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        return search_value(identifier)
    return None


def _with_condition(request: dict[str, Any], value: str) -> dict[str, Any]:
    if "ifNoneExist" in request:
        return {**request, "ifNoneExist": CONDITION + value}
    resource_type = request["url"].partition("?")[0]
    return {**request, "url": f"{resource_type}?{CONDITION}{value}"}
