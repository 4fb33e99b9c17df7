"""Routing rules: which destinations a message goes to, decided on its canonical FHIR Bundle.

A rule is a FHIRPath expression evaluated with the message's transaction Bundle as its root, e.g.
``entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()``. Analysts who route
on the HL7 v2 header have it as variables: ``%messageType`` (``ADT^A01``), ``%messageCode``
(``ADT``), ``%triggerEvent`` (``A01``), ``%sendingApplication`` and ``%sendingFacility``.

A channel has an optional filter (a message it refuses goes nowhere) and each destination an
optional ``route_when`` (blank: always). `compile_rule` checks an expression once (syntax with
the parser's position, unknown functions and variables) and `RoutingTable.decide` evaluates a
channel's compiled rules on one message, returning one `Decision` per destination with its
reason. A rule that fails on a message is reported as such, never taken as true or false.

Evaluation takes the fast path (adapters.fhirpath_fast) where the rule and the data allow it,
and fhirpathpy otherwise; both give the same answers.

Result of a rule, as FHIRPath evaluates a collection where a boolean is expected: empty is false,
one boolean is itself, one other value is true (it exists); several values are an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.fhirpath_fast import compile_fast
from adapters.mapping.field_rules import fhirpath_syntax_error

HEADER_VARIABLES = (
    "messageType",
    "messageCode",
    "triggerEvent",
    "sendingApplication",
    "sendingFacility",
)
# Tried once on save, so that an unknown function or variable is refused then, not per message.
_TRIAL_BUNDLE: dict = {"resourceType": "Bundle", "type": "transaction", "entry": []}
_TRIAL_HEADER = dict.fromkeys(HEADER_VARIABLES, "")


class RuleError(ValueError):
    """An expression that cannot be compiled, or that failed on a message. ``position`` is the
    parser's 1-based character position when it gave one."""

    def __init__(self, expression: str, problem: str, position: int | None = None) -> None:
        super().__init__(problem)
        self.expression = expression
        self.problem = problem
        self.position = position


@dataclass(frozen=True)
class Rule:
    expression: str
    evaluate: Callable[[Mapping, Mapping], list]  # fhirpathpy's
    fast: Callable[[Mapping, Mapping], list] | None = None  # adapters.fhirpath_fast's, if any

    def holds(self, bundle: Mapping, header: Mapping[str, str]) -> bool:
        """Whether the rule is true for this message; RuleError when it cannot say."""
        return as_boolean(self.expression, self.result(bundle, header))

    def result(self, bundle: Mapping, header: Mapping[str, str]) -> list:
        if self.fast is not None:
            try:
                return self.fast(bundle, header)
            except Exception:  # Unsure, or anything else: fhirpathpy answers, in its words
                pass
        try:
            return self.evaluate(bundle, header)
        except Exception as exc:  # fhirpathpy raises bare Exceptions for type errors and the like
            raise RuleError(self.expression, str(exc) or type(exc).__name__) from None


def as_boolean(expression: str, result: Sequence[Any]) -> bool:
    if not result:
        return False
    if len(result) > 1:
        raise RuleError(
            expression,
            f"gave {len(result)} values where one boolean is needed "
            "(end it with .exists(), .all(...) or a comparison)",
        )
    value = result[0]
    return value if isinstance(value, bool) else True


def compile_rule(expression: str) -> Rule | None:
    """The rule ``expression`` states, or None when it is blank (always route). Raises RuleError
    with the parser's position for a syntax error, or with the engine's reason for a function or
    variable it does not know."""
    import fhirpathpy
    from fhirpathpy.models import models

    text = (expression or "").strip()
    if not text:
        return None
    problem = fhirpath_syntax_error(text)
    if problem:
        raise RuleError(text, f"FHIRPath syntax error {problem}", _position(problem))
    try:
        compiled = fhirpathpy.compile(text, models["r4"])
    except Exception as exc:  # the engine's parser may still refuse what the grammar allows
        raise RuleError(text, f"FHIRPath cannot be compiled: {exc}") from None
    rule = Rule(text, compiled, compile_fast(text))
    try:
        rule.holds(_TRIAL_BUNDLE, _TRIAL_HEADER)
    except RuleError as exc:
        raise RuleError(text, f"FHIRPath cannot be evaluated: {exc.problem}") from None
    return rule


def _position(problem: str) -> int | None:
    # fhirpath_syntax_error says "at character N: ..."
    words = problem.split(":", 1)[0].split()
    return int(words[-1]) if words and words[-1].isdigit() else None


def header_variables(message_type: str, sending_application: str, sending_facility: str) -> dict:
    """The v2 header as rule variables; ``message_type`` is ``CODE^EVENT`` (or just ``CODE``)."""
    code, _, event = (message_type or "").partition("^")
    return {
        "messageType": message_type or "",
        "messageCode": code,
        "triggerEvent": event.split("^")[0],
        "sendingApplication": sending_application or "",
        "sendingFacility": sending_facility or "",
    }


@dataclass(frozen=True)
class Target:
    """A destination as routing sees it."""

    id: int
    name: str
    rule: Rule | None


@dataclass(frozen=True)
class Decision:
    destination: int
    destination_name: str
    routed: bool
    reason: str
    error: RuleError | None = None  # the rule failed on this message

    def as_dict(self) -> dict:
        return {
            "destination": self.destination,
            "destination_name": self.destination_name,
            "routed": self.routed,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Verdict:
    """What routing decided for one message: a decision per destination, and the rule that
    failed (its RuleError) if one did, in which case nothing is routed."""

    decisions: tuple[Decision, ...]
    error: RuleError | None = None
    failed_rule: str = ""  # "channel filter" or the destination's name

    @property
    def routed(self) -> tuple[int, ...]:
        return tuple(d.destination for d in self.decisions if d.routed)


@dataclass(frozen=True)
class RoutingTable:
    """A channel's rules, compiled: its filter and its enabled destinations in order."""

    channel_filter: Rule | None
    targets: tuple[Target, ...]

    def decide(self, bundle: Mapping, header: Mapping[str, str]) -> Verdict:
        if self.channel_filter is not None:
            try:
                passed = self.channel_filter.holds(bundle, header)
            except RuleError as exc:
                reason = f"channel filter `{exc.expression}` failed: {exc.problem}"
                return Verdict(self._none(reason), exc, "channel filter")
            if not passed:
                reason = f"channel filter `{self.channel_filter.expression}` evaluated false"
                return Verdict(self._none(reason))
        decisions = [_decide(target, bundle, header) for target in self.targets]
        failed = next((d for d in decisions if d.error is not None), None)
        if failed is None:
            return Verdict(tuple(decisions))
        # Sending to some destinations when another's rule cannot be read would be a guess.
        held = tuple(_held(d) for d in decisions)
        return Verdict(held, failed.error, failed.destination_name)

    def _none(self, reason: str) -> tuple[Decision, ...]:
        return tuple(Decision(t.id, t.name, False, reason) for t in self.targets)


def _decide(target: Target, bundle: Mapping, header: Mapping[str, str]) -> Decision:
    if target.rule is None:
        return Decision(target.id, target.name, True, "no rule: always routed")
    expression = target.rule.expression
    try:
        routed = target.rule.holds(bundle, header)
    except RuleError as exc:
        return Decision(target.id, target.name, False, f"`{expression}` failed: {exc}", exc)
    outcome = "true" if routed else "false"
    return Decision(target.id, target.name, routed, f"`{expression}` evaluated {outcome}")


def _held(decision: Decision) -> Decision:
    if decision.error is not None or not decision.routed:
        return decision
    reason = f"{decision.reason}; not sent, as another rule failed"
    return Decision(decision.destination, decision.destination_name, False, reason)


def compile_table(channel_filter: str, targets: Sequence[tuple[int, str, str]]) -> RoutingTable:
    """A channel's routing compiled from its filter and its destinations' (id, name, route_when).
    Raises RuleError for the first expression that does not compile."""
    return RoutingTable(
        compile_rule(channel_filter),
        tuple(Target(id, name, compile_rule(when)) for id, name, when in targets),
    )
