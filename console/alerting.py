"""Alerts as people handle them (acknowledge, resolve, edit a rule), one function each, with the
audit entry written here; the evaluation itself is channels_app.alerts, run by beat."""

from __future__ import annotations

from django.forms.models import model_to_dict

from channels_app import alerts
from channels_app.models import Alert, AlertRule
from console import audit

SECRET_MARK = "(set)"


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
    """Save a rule validated by its form, audited with what changed."""
    rule.save()
    audit.record_change(request, "alert-rule", rule.pk, before, public_rule(rule))
    return rule
