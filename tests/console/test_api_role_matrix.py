"""Every API route, every method, every role (by token and by session): allowed or refused as the
table says. A route missing from API_MATRIX, or an action without a declared role, fails here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from channels_app.models import (
    Alert,
    AlertRule,
    Channel,
    ChannelSample,
    Delivery,
    Message,
    ReplayJob,
)
from console import tokens
from console.access import declared, is_api_view
from console.models import AuditEvent
from console.roles import RESEND_EDITED, Permission, Role
from tests import factories
from tests.routes import all_patterns, url_of

pytestmark = pytest.mark.django_db

VIEWER, OPERATOR, ANALYST, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ANALYST, Role.ADMIN
API_MATRIX = {
    "api-index": {"GET": VIEWER},
    "api-schema": {"GET": VIEWER},
    "metrics": {"GET": VIEWER},
    "api-inbound": {"POST": OPERATOR},
    "api-channel-list": {"GET": VIEWER, "POST": ANALYST},
    "api-channel-detail": {"GET": VIEWER, "PUT": ANALYST, "PATCH": ANALYST, "DELETE": ANALYST},
    "api-channel-clone": {"POST": ANALYST},
    "api-channel-archive": {"POST": ANALYST},
    "api-channel-restore": {"POST": ANALYST},
    "api-channel-publish": {"POST": ADMIN},
    "api-channel-rollback": {"POST": ADMIN},
    "api-channel-versions": {"GET": VIEWER},
    "api-channel-pause": {"POST": OPERATOR},
    "api-channel-resume": {"POST": OPERATOR},
    "api-channel-test": {"POST": ANALYST},
    "api-channel-suite": {"POST": ANALYST},
    "api-channel-mapping": {"GET": VIEWER, "PUT": ANALYST},
    "api-channel-export": {"GET": ANALYST},
    "api-channel-import": {"POST": ADMIN},
    "api-channel-draft": {"GET": ANALYST, "PUT": ANALYST, "DELETE": ANALYST},
    "api-channel-draft-publish": {"POST": ANALYST},
    "api-channel-draft-preview": {"GET": ANALYST},
    "api-channel-version-diff": {"GET": VIEWER},
    "api-sample-list": {"GET": ANALYST, "POST": ANALYST},
    "api-sample-detail": {"GET": ANALYST, "PATCH": ANALYST, "DELETE": ANALYST},
    "api-sample-accept": {"POST": ANALYST},
    "api-destination-list": {"GET": VIEWER, "POST": ANALYST},
    "api-destination-detail": {"GET": VIEWER, "PUT": ANALYST, "PATCH": ANALYST},
    "api-destination-pause": {"POST": OPERATOR},
    "api-destination-resume": {"POST": OPERATOR},
    "api-message-list": {"GET": VIEWER},
    "api-message-detail": {"GET": VIEWER},
    "api-message-body": {"GET": VIEWER},
    "api-message-timeline": {"GET": VIEWER},
    "api-message-reveal": {"POST": OPERATOR},
    "api-message-replay": {"POST": OPERATOR},
    "api-message-replay-bulk": {"POST": OPERATOR},
    "api-message-resend": {"POST": RESEND_EDITED},
    "api-replay-job-list": {"GET": OPERATOR},
    "api-replay-job-detail": {"GET": OPERATOR},
    "api-replay-job-items": {"GET": OPERATOR},
    "api-replay-job-pause": {"POST": OPERATOR},
    "api-replay-job-resume": {"POST": OPERATOR},
    "api-replay-job-cancel": {"POST": OPERATOR},
    "api-delivery-list": {"GET": VIEWER},
    "api-delivery-detail": {"GET": VIEWER},
    "api-delivery-attempts": {"GET": VIEWER},
    "api-audit-list": {"GET": ADMIN},
    "api-audit-detail": {"GET": ADMIN},
    "api-token-list": {"GET": ADMIN, "POST": ADMIN},
    "api-token-detail": {"GET": ADMIN},
    "api-token-rotate": {"POST": ADMIN},
    "api-token-revoke": {"POST": ADMIN},
    "api-alert-list": {"GET": VIEWER},
    "api-alert-detail": {"GET": VIEWER},
    "api-alert-ack": {"POST": OPERATOR},
    "api-alert-resolve": {"POST": OPERATOR},
    "api-alert-rule-list": {"GET": VIEWER, "POST": ANALYST},
    "api-alert-rule-detail": {"GET": VIEWER, "PUT": ANALYST, "PATCH": ANALYST, "DELETE": ANALYST},
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ROLES = {"viewer": VIEWER, "operator": OPERATOR, "analyst": ANALYST, "admin": ADMIN}
# Signed-in people who are not a role's namesake: an operator granted edit-and-resend. Tokens are
# issued for ROLES only; a service account holds no permission beyond its token's role.
PEOPLE = {**ROLES, "resender": OPERATOR}
GRANTED = {RESEND_EDITED: {"session resender"}}


def api_patterns():
    return [(p, route) for p, route in all_patterns() if is_api_view(p.callback)]


def test_every_api_route_is_in_the_table():
    names = {p.name for p, _ in api_patterns()}
    assert names == API_MATRIX.keys()


def test_table_matches_declarations():
    for p, route in api_patterns():
        for method in METHODS:
            want = API_MATRIX[p.name].get(method)
            got = declared(p.callback, method)
            assert got == want, f"{method} {route}: declared {got}, table says {want}"


@pytest.fixture
def objects():
    channel = factories.channel(40201, source_type=Channel.SourceType.HTTP)
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    message = Message.objects.create(channel=channel, raw=factories.adt_a01("API-1"))
    delivery = Delivery.objects.create(message=message, destination=destination)
    event = AuditEvent.objects.create(action="test.event")
    sample = ChannelSample.objects.create(channel=channel, name="s", raw="MSH|^~\\&|A")
    job = ReplayJob.objects.create(mode=ReplayJob.Mode.REDELIVER, state=ReplayJob.State.DONE)
    target = tokens.issue(tokens.service_account("target"), VIEWER, lifetime=timedelta(days=1))
    rule = AlertRule.objects.create(name="r", kind=AlertRule.Kind.ERRORS, threshold=1)
    alert = Alert.objects.create(rule=rule)
    ids = {
        "channel": channel.pk,
        "destination": destination.pk,
        "message": message.pk,
        "delivery": delivery.pk,
        "audit": event.pk,
        "token": target.token.pk,
        "replay": job.pk,
        "sample": sample.pk,
        "alert": alert.pk,
        "alert-rule": rule.pk,
    }
    return ids


def url_for(pattern, route: str, ids: dict) -> str:
    parts = pattern.name.split("-")
    noun = "channel" if pattern.name == "api-inbound" else parts[1] if len(parts) > 1 else ""
    if pattern.name.startswith("api-alert-rule"):
        noun = "alert-rule"
    return url_of(route, ids.get(noun, 0))


def clients(users) -> dict[str, Client]:
    """Each identity twice over: by session (people) and by token (service accounts)."""
    found = {"anonymous": Client(), "bad token": Client(HTTP_AUTHORIZATION="Bearer hub_x")}
    for label, user in users.items():
        session = Client()
        session.force_login(user)
        found[f"session {label}"] = session
        if label in ROLES:
            issued = tokens.issue(
                tokens.service_account(f"svc-{label}"), ROLES[label], lifetime=timedelta(days=1)
            )
            found[f"token {label}"] = Client(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return found


def allowed(access, identity: str) -> bool:
    if access is None or identity in ("anonymous", "bad token"):
        return False
    role = PEOPLE.get(identity.split()[-1])
    if isinstance(access, Permission):
        held = role == ADMIN or identity in GRANTED[access]
        return role is not None and role >= access.role and held
    return role is not None and role >= access


def test_api_role_matrix(users, objects):
    failures, checked = [], 0
    everyone = clients(users)
    for pattern, route in api_patterns():
        url = url_for(pattern, route, objects)
        for method in METHODS:
            access = API_MATRIX[pattern.name].get(method)
            for identity, client in everyone.items():
                response = client.generic(method, url, "{}", content_type="application/json")
                want = allowed(access, identity)
                refused = response.status_code in (401, 403, 405)
                if want and refused:
                    failures.append(f"{identity} {method} {url}: refused {response.status_code}")
                if not want and not refused:
                    failures.append(f"{identity} {method} {url}: allowed {response.status_code}")
                if identity in ("anonymous", "bad token") and response.status_code != 401:
                    failures.append(f"{identity} {method} {url}: {response.status_code}, not 401")
                if response.status_code >= 500:
                    failures.append(f"{identity} {method} {url}: {response.status_code}")
                checked += 1
    assert not failures, "\n".join(failures)
    assert checked == len(API_MATRIX) * len(METHODS) * len(everyone)


def test_refusals_are_json_and_say_why(viewer_user):
    client = Client()
    response = client.get("/api/v1/messages/")
    assert response.status_code == 401 and response.json()["reason"] == "anonymous"
    assert response["WWW-Authenticate"].startswith("Bearer")
    client.force_login(viewer_user)
    response = client.get("/api/v1/audit/")
    assert response.status_code == 403
    assert "needs the admin role; your role is viewer" in response.json()["detail"]
