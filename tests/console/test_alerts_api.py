"""The alerts API: everyone lists alerts (filtered, with how each notice fared), operators
acknowledge and resolve them, analysts create, change and delete rules (the webhook secret
write-only); every move and change is audited as on the Alerts page."""

from __future__ import annotations

import json

import pytest

from channels_app import alerts
from channels_app.models import Alert, AlertNotice, AlertRule
from console.models import AuditEvent
from tests import factories
from tests.channels_app.test_alerts import SECRET, WebhookReceiver
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def scene():
    lab, ward = factories.channel(40811, name="Lab"), factories.channel(40812, name="Ward")
    ehr = factories.fhir_destination(ward, "http://127.0.0.1:9/fhir", name="EHR")
    errors = AlertRule.objects.create(
        name="Lab errors", kind=AlertRule.Kind.ERRORS, channel=lab, threshold=1
    )
    breaker = AlertRule.objects.create(
        name="EHR breaker", kind=AlertRule.Kind.BREAKER_OPEN, destination=ehr
    )
    return {
        "lab": lab,
        "ward": ward,
        "ehr": ehr,
        "errors": errors,
        "open": Alert.objects.create(rule=errors, value=4, detail="4 error(s) in 5 min"),
        "resolved": Alert.objects.create(rule=breaker, state=Alert.State.RESOLVED),
    }


def ids(client, **query) -> list[int]:
    response = client.get("/api/v1/alerts/", query)
    assert response.status_code == 200, response.content
    return [a["id"] for a in response.json()["results"]]


def test_alerts_are_listed_and_filtered(viewer_user, scene):
    client = signed_in(viewer_user)
    assert ids(client) == [scene["resolved"].pk, scene["open"].pk]
    assert ids(client, state="open") == [scene["open"].pk]
    assert ids(client, rule=scene["errors"].pk) == [scene["open"].pk]
    assert ids(client, channel=scene["ward"].pk) == [scene["resolved"].pk]  # by its destination
    assert ids(client, opened_after="2000-01-01", opened_before="2001-01-01") == []
    shown = client.get(f"/api/v1/alerts/{scene['open'].pk}/").json()
    assert shown["rule_name"] == "Lab errors" and shown["detail"] == "4 error(s) in 5 min"
    assert shown["notices"] == []

    refused = client.get("/api/v1/alerts/", {"state": "sleeping"})
    assert refused.status_code == 400 and "sleeping" in refused.json()["state"][0]


def test_an_operator_acknowledges_and_resolves_once_each_audited(operator_user, scene, webhook):
    AlertRule.objects.filter(pk=scene["errors"].pk).update(webhook_url=webhook.url)
    client = signed_in(operator_user)
    url = f"/api/v1/alerts/{scene['open'].pk}"

    acked = client.post(f"{url}/ack/")
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == operator_user.username
    assert client.post(f"{url}/ack/").status_code == 409

    resolved = client.post(f"{url}/resolve/")
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    [notice] = resolved.json()["notices"]
    assert (notice["event"], notice["via"], notice["state"]) == ("resolved", "webhook", "sent")
    assert (notice["attempts"], notice["last_error"]) == (1, "")
    assert webhook.events() == ["resolved"]
    assert client.post(f"{url}/resolve/").status_code == 409
    assert webhook.events() == ["resolved"]  # one notice, however often it is asked

    audited = AuditEvent.objects.filter(target=f"alert:{scene['open'].pk}")
    assert sorted(audited.values_list("action", flat=True)) == [
        "alert.acknowledged",
        "alert.resolved",
    ]
    assert audited.filter(actor=operator_user).count() == 2


def test_an_analyst_manages_rules_with_a_write_only_secret(analyst_user, scene):
    client = signed_in(analyst_user)
    created = client.post(
        "/api/v1/alert-rules/",
        {
            "name": "Ward p95",
            "kind": "p95",
            "channel": scene["ward"].pk,
            "threshold": 800,
            "window_min": 15,
            "webhook_url": "https://pager.example.org/hook",
            "webhook_secret": SECRET,
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["has_webhook_secret"] is True and "webhook_secret" not in body
    rule = AlertRule.objects.get(pk=body["id"])
    assert alerts.open_secret(rule.webhook_secret) == SECRET

    changed = client.patch(
        f"/api/v1/alert-rules/{rule.pk}/", {"threshold": 1200}, content_type="application/json"
    )
    assert changed.status_code == 200 and changed.json()["threshold"] == 1200
    rule.refresh_from_db()
    assert alerts.open_secret(rule.webhook_secret) == SECRET  # left out: kept

    assert client.delete(f"/api/v1/alert-rules/{rule.pk}/").status_code == 204
    assert not AlertRule.objects.filter(pk=rule.pk).exists()

    events = AuditEvent.objects.filter(target=f"alert-rule:{rule.pk}").order_by("id")
    assert [e.action for e in events] == [
        "alert-rule.created",
        "alert-rule.updated",
        "alert-rule.deleted",
    ]
    assert events[1].detail["changes"] == {"threshold": [800.0, 1200.0]}
    assert SECRET not in json.dumps([e.detail for e in events])
    assert events[0].detail["changes"]["webhook_secret"] == [None, "(set)"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "errors", "threshold": None}, "threshold"),
        ({"kind": "errors", "threshold": 1, "active_from": "08:00"}, "active_until"),
        ({"kind": "breaker_open", "channel": "lab", "destination": "ehr"}, "destination"),
    ],
)
def test_a_rule_that_does_not_hold_together_is_refused_by_field(analyst_user, scene, change, field):
    data = {"name": "bad", **change}
    for key in ("channel", "destination"):
        if key in data:
            data[key] = scene[data[key]].pk
    response = signed_in(analyst_user).post(
        "/api/v1/alert-rules/", data, content_type="application/json"
    )
    assert response.status_code == 400 and field in response.json()
    assert not AlertRule.objects.filter(name="bad").exists()


def test_a_state_rule_needs_no_threshold(analyst_user, scene):
    response = signed_in(analyst_user).post(
        "/api/v1/alert-rules/",
        {"name": "EHR down", "kind": "breaker_open", "destination": scene["ehr"].pk},
        content_type="application/json",
    )
    assert response.status_code == 201 and response.json()["threshold"] == 0


def test_notices_are_listed_with_their_state(viewer_user, scene):
    AlertNotice.objects.create(
        alert=scene["open"],
        event="opened",
        via="email",
        state="failed",
        attempts=6,
        last_error="email not sent: connection refused",
    )
    [shown] = signed_in(viewer_user).get("/api/v1/alerts/", {"state": "open"}).json()["results"]
    assert shown["notices"][0]["state"] == "failed" and shown["notices"][0]["attempts"] == 6
