"""A channel's rules are compiled once per version of its routing, not per message or batch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from channels_app.routing import RuleError, checked_rule, routing_table

RULE = "%messageCode = 'ORU'"


def destinations(*rules: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=i, name=f"d{i}", route_when=r) for i, r in enumerate(rules, 1)]


def test_the_same_rules_give_the_same_compiled_table():
    first = routing_table(7001, "", destinations(RULE, ""))
    assert routing_table(7001, "", destinations(RULE, "")) is first


def test_a_changed_rule_or_filter_is_compiled_anew():
    first = routing_table(7002, "", destinations(RULE))
    changed = routing_table(7002, "", destinations("%messageCode = 'ADT'"))
    filtered = routing_table(7002, "%sendingFacility = 'LAB'", destinations(RULE))
    assert changed is not first and filtered is not first
    assert changed.targets[0].rule.expression == "%messageCode = 'ADT'"
    assert filtered.channel_filter.expression == "%sendingFacility = 'LAB'"


def test_each_channel_has_its_own_table():
    assert routing_table(7003, "", destinations(RULE)) is not routing_table(
        7004, "", destinations(RULE)
    )


def test_checked_rule_trims_and_refuses_with_the_position():
    assert checked_rule(f"  {RULE}\n") == RULE
    assert checked_rule("") == ""
    with pytest.raises(RuleError, match="at character 15"):
        checked_rule("%messageCode = ")
