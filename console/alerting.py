"""Alerts as people handle them (acknowledge, resolve, edit a rule), one function each, with the
audit entry written here; the evaluation itself is channels_app.alerts, run by beat."""

from __future__ import annotations

from django.forms.models import model_to_dict

from channels_app import alerts
from channels_app.models import Alert, AlertRule
from console import audit

SECRET_MARK = "(set)"
# Kinds that read a state, not a figure: they need no threshold.
STATE_KINDS = (AlertRule.Kind.BREAKER_OPEN, AlertRule.Kind.LISTENER_DOWN)


def rule_problems(fields: dict) -> dict[str, str]:
    """What does not hold together in a rule's settings, by field: the page's form and the API
    check the same. A state kind without a threshold is fine (it is saved as 0)."""
    problems = {}
    destination, channel = fields.get("destination"), fields.get("channel")
    if destination and channel and destination.channel_id != channel.pk:
        problems["destination"] = "This destination belongs to another channel."
    if fields.get("threshold") is None and fields.get("kind") not in STATE_KINDS:
        problems["threshold"] = "This field is required."
    if (fields.get("active_from") is None) != (fields.get("active_until") is None):
        problems["active_until"] = "Give both times, or neither."
    return problems


def acknowledge(request, alert: Alert) -> bool:
    done = alerts.acknowledge(alert, request.user)
    if done:
        audit.record(request, "alert.acknowledged", target=f"alert:{alert.pk}")
    return done


def resolve(request, alert: Alert) -> bool:
    """Resolved by hand (the rule still firing opens a new alert at the next evaluation)."""
    notice = alerts.resolve(alert, f"by {request.user.get_username()}")
    if notice is None:
        return False
    audit.record(request, "alert.resolved", target=f"alert:{alert.pk}")
    alerts.notify(*notice)
    return True


def public_rule(rule: AlertRule) -> dict:
    """A rule as the audit log shows it: its secret only as a mark."""
    data = model_to_dict(rule, exclude=["id", "created_at"])
    data["webhook_secret"] = SECRET_MARK if rule.webhook_secret else ""
    for key in ("active_from", "active_until"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


def save_rule(request, rule: AlertRule, before: dict | None) -> AlertRule:
    """Save a rule validated by its form or serializer, audited with what changed."""
    if rule.threshold is None:
        rule.threshold = 0  # a state kind (rule_problems refused it for the others)
    rule.save()
    audit.record_change(request, "alert-rule", rule.pk, before, public_rule(rule))
    return rule


def delete_rule(request, rule: AlertRule) -> None:
    """Delete a rule (its alerts and their notices go with it), audited with what it was."""
    before, pk = public_rule(rule), rule.pk
    rule.delete()
    audit.record(request, "alert-rule.deleted", target=f"alert-rule:{pk}", detail={"was": before})
