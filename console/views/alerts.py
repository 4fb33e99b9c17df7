"""Alerts: what is open now and what happened before, each linking to its failing messages;
operators acknowledge and resolve (audited), analysts edit the rules (audited)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from channels_app.models import Alert, AlertRule
from console import alerting
from console.access import requires
from console.forms import AlertRuleForm
from console.roles import Role, has_role

HISTORY = 100


@requires(Role.VIEWER)
def alert_list(request):
    alerts = Alert.objects.select_related(
        "rule", "rule__channel", "rule__destination", "acknowledged_by"
    ).prefetch_related("notices")
    unresolved = alerts.exclude(state=Alert.State.RESOLVED)
    context = {
        "unresolved": [(a, messages_url(a)) for a in unresolved],
        "history": [
            (a, messages_url(a)) for a in alerts.filter(state=Alert.State.RESOLVED)[:HISTORY]
        ],
        "rules": AlertRule.objects.select_related("channel", "destination"),
        "may_handle": has_role(request.user, Role.OPERATOR),
        "may_edit": has_role(request.user, Role.ANALYST),
    }
    return render(request, "alerts/list.html", context)


def messages_url(alert: Alert) -> str:
    """The messages behind an alert: its channel's failed ones (the message list's filters)."""
    query = "status=ERROR"
    channel_id = alert.rule.channel_id or (
        alert.rule.destination.channel_id if alert.rule.destination_id else None
    )
    if channel_id:
        query += f"&channel={channel_id}"
    return f"{reverse('messages')}?{query}"


@requires(Role.OPERATOR)
@require_POST
def alert_acknowledge(request, pk: int):
    alert = get_object_or_404(Alert, pk=pk)
    if not alerting.acknowledge(request, alert):
        messages.warning(request, "This alert was not open any more.")
    return redirect("alerts")


@requires(Role.OPERATOR)
@require_POST
def alert_resolve(request, pk: int):
    alert = get_object_or_404(Alert.objects.select_related("rule"), pk=pk)
    if not alerting.resolve(request, alert):
        messages.warning(request, "This alert was resolved already.")
    return redirect("alerts")


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def rule_new(request):
    return _edit(request, AlertRule())


@requires(Role.ANALYST)
@require_http_methods(["GET", "POST"])
def rule_edit(request, pk: int):
    return _edit(request, get_object_or_404(AlertRule, pk=pk))


def _edit(request, rule: AlertRule):
    before = None if rule.pk is None else alerting.public_rule(rule)
    form = AlertRuleForm(request.POST if request.method == "POST" else None, instance=rule)
    if request.method == "POST" and form.is_valid():
        alerting.save_rule(request, form.save(commit=False), before)
        messages.success(request, f"Alert rule “{rule.name}” saved.")
        return redirect("alerts")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "rule": rule, "has_secret": bool(rule.webhook_secret)}
    return render(request, "alerts/rule_form.html", context, status=status)
