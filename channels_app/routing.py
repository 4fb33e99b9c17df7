"""Routing rules as the hub stores them: a channel's ``route_filter`` and each destination's
``route_when`` (FHIRPath, see adapters.routing).

`checked_rule` is the one validation the destination form, the channel form and the REST API
call, so an expression one of them refuses the others refuse too. `routing_table` gives the
worker a channel's compiled rules: compiled once per version of the channel's routing (the cache
key is the channel and the text of its rules), never per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from adapters.routing import RoutingTable, RuleError, compile_rule, compile_table

__all__ = ["RuleError", "checked_rule", "routing_table"]


def checked_rule(expression: str) -> str:
    """``expression`` ready to store (trimmed; blank means always). Raises RuleError, a
    ValueError whose message gives the parser's position (``at character 17: ...``)."""
    text = (expression or "").strip()
    compile_rule(text)
    return text


def routing_table(channel_id: int, route_filter: str, destinations: Iterable) -> RoutingTable:
    """The compiled rules of a channel whose enabled ``destinations`` (rows with id, name and
    route_when) are given. Raises RuleError if a stored expression no longer compiles."""
    targets = tuple((d.id, d.name, d.route_when) for d in destinations)
    return _compiled(channel_id, route_filter or "", targets)


@lru_cache(maxsize=1024)
def _compiled(channel_id: int, route_filter: str, targets: tuple) -> RoutingTable:
    # channel_id is part of the key: two channels with the same rules keep their own entry, so a
    # channel's table is dropped from the cache only by its own changes.
    return compile_table(route_filter, targets)
