"""The Alerts page: everyone sees what is open and what happened; operators acknowledge and
resolve, analysts edit rules (the webhook secret write-only); each of those is audited."""

from __future__ import annotations

import pytest

from channels_app import alerts
from channels_app.models import Alert, AlertRule
from console.models import AuditEvent
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db


def signed_in(client, role: Role):
    client.force_login(factories.user(None, role))
    return client


@pytest.fixture
def open_alert():
    channel = factories.channel(40801, name="Radiology")
    rule = AlertRule.objects.create(
        name="Radiology errors", kind=AlertRule.Kind.ERRORS, channel=channel, threshold=1
    )
    return Alert.objects.create(rule=rule, value=3, detail="3 error(s) in 5 min")


def test_viewers_see_alerts_without_the_buttons(client, open_alert):
    page = signed_in(client, Role.VIEWER).get("/alerts/").content.decode()
    assert "Radiology errors" in page and "3 error(s) in 5 min" in page
    assert f"/messages/?status=ERROR&amp;channel={open_alert.rule.channel_id}" in page
    assert "/acknowledge/" not in page and "New rule" not in page


def test_an_operator_acknowledges_then_resolves_and_both_are_audited(client, open_alert):
    operator = signed_in(client, Role.OPERATOR)
    assert "/acknowledge/" in operator.get("/alerts/").content.decode()
    operator.post(f"/alerts/{open_alert.pk}/acknowledge/")
    open_alert.refresh_from_db()
    assert open_alert.state == Alert.State.ACKNOWLEDGED and open_alert.acknowledged_by
    operator.post(f"/alerts/{open_alert.pk}/resolve/")
    open_alert.refresh_from_db()
    assert open_alert.state == Alert.State.RESOLVED
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "target"))
    assert actions[-2:] == [
        ("alert.acknowledged", f"alert:{open_alert.pk}"),
        ("alert.resolved", f"alert:{open_alert.pk}"),
    ]
    assert "No alert has resolved yet" not in operator.get("/alerts/").content.decode()


def test_an_analyst_adds_and_edits_a_rule_with_a_write_only_secret(client):
    channel = factories.channel(40802, name="Admissions")
    analyst = signed_in(client, Role.ANALYST)
    form = {
        "name": "No admissions",
        "kind": "inactivity",
        "channel": channel.pk,
        "threshold": 0,
        "window_min": 15,
        "message_type": "ADT^A01",
        "active_from": "07:00",
        "active_until": "19:00",
        "enabled": "on",
        "notify_emails": "ward@example.org",
        "webhook_url": "http://127.0.0.1:9/hook",
        "webhook_secret": "s3cret-value",
    }
    assert analyst.post("/alerts/rules/new/", form).status_code == 302
    rule = AlertRule.objects.get()
    assert alerts.open_secret(rule.webhook_secret) == "s3cret-value"
    assert rule.active_from.hour == 7
    page = analyst.get(f"/alerts/rules/{rule.pk}/edit/").content.decode()
    assert "s3cret-value" not in page and "A secret is saved" in page
    assert (
        analyst.post(
            f"/alerts/rules/{rule.pk}/edit/", {**form, "webhook_secret": "", "window_min": 30}
        ).status_code
        == 302
    )
    rule.refresh_from_db()
    assert alerts.open_secret(rule.webhook_secret) == "s3cret-value" and rule.window_min == 30
    created, updated = AuditEvent.objects.filter(action__startswith="alert-rule.").order_by("id")
    assert created.action == "alert-rule.created" and "s3cret" not in str(created.detail)
    assert updated.detail["changes"] == {"window_min": [15, 30]}


def test_the_webhook_secret_is_sealed_at_rest_when_keys_are_set(client, settings):
    from cryptography.fernet import Fernet

    settings.HUB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    channel = factories.channel(40805)
    form = {
        "name": "sealed",
        "kind": "errors",
        "channel": channel.pk,
        "threshold": 1,
        "window_min": 5,
        "webhook_url": "http://127.0.0.1:9/hook",
        "webhook_secret": "plain-secret",
    }
    assert signed_in(client, Role.ANALYST).post("/alerts/rules/new/", form).status_code == 302
    stored = AlertRule.objects.get().webhook_secret
    assert "plain-secret" not in stored and stored.startswith(alerts.SEALED_PREFIX)
    assert alerts.open_secret(stored) == "plain-secret"


def test_a_rule_refuses_a_destination_of_another_channel(client):
    channel, other = factories.channel(40803), factories.channel(40804)
    destination = factories.fhir_destination(other, "http://127.0.0.1:9/fhir")
    response = signed_in(client, Role.ANALYST).post(
        "/alerts/rules/new/",
        {
            "name": "x",
            "kind": "errors",
            "channel": channel.pk,
            "destination": destination.pk,
            "threshold": 1,
            "window_min": 5,
        },
    )
    assert response.status_code == 400 and "belongs to another channel" in response.content.decode()
    assert not AlertRule.objects.exists()
