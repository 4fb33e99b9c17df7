"""schemathesis against the OpenAPI schema, over real HTTP, with a token of each role and none:
no 5xx anywhere, and no answer beyond the role (every refused call is 401/403, every call the
role allows gets past the role check). The figures are printed for the issue notes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest
import requests
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings

from channels_app.models import Channel, Delivery, Message
from console import tokens
from console.access import api_access
from console.roles import Permission, Role
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 8
UNROUTED = "unrouted"
ROLES = {
    "viewer": Role.VIEWER,
    "operator": Role.OPERATOR,
    "analyst": Role.ANALYST,
    "admin": Role.ADMIN,
}


def needed_role(method: str, path: str):
    """The role the route declares for ``method`` (resolved the way the middleware does)."""
    from django.urls import Resolver404, resolve

    try:
        view = resolve(path.split("?")[0]).func
    except Resolver404:  # e.g. a negative id: no route, so no view and nothing to reveal
        return UNROUTED
    return api_access(view.cls, getattr(view, "actions", None), method)


@pytest.fixture
def world():
    """Something behind every id the generator may try (ids 1..3 exist for each kind)."""
    for n in range(3):
        channel = factories.channel(40500 + n, source_type=Channel.SourceType.HTTP)
        destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
        message = Message.objects.create(channel=channel, raw=factories.adt_a01(f"SCHEMA-{n}"))
        Delivery.objects.create(message=message, destination=destination)


def test_no_5xx_and_no_access_beyond_the_role(live_server, world):
    spec = SchemaGenerator().get_schema(request=None, public=True)
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    identities = {"anonymous": None}
    for label, role in ROLES.items():
        issued = tokens.issue(
            tokens.service_account(f"fuzz-{label}"), role, lifetime=timedelta(days=1)
        )
        identities[label] = issued.secret
    session = requests.Session()
    figures: Counter = Counter()
    failures: list[str] = []

    for identity, secret in identities.items():
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        for operation in operations:
            exercise(
                operation, identity, Caller(live_server.url, session, headers), figures, failures
            )
    session.close()
    print(f"\nschemathesis: {dict(figures)} over {len(operations)} operations")
    assert figures["calls"] >= len(operations) * len(identities)
    assert not failures, "\n".join(sorted(set(failures))[:40])


def within(role: Role, needed: Role | Permission) -> bool:
    """Whether a token of ``role`` may call a route that needs ``needed``. The fuzzing accounts
    are service accounts granted no permission: a permission route is theirs only as admins."""
    if isinstance(needed, Permission):
        return role >= needed.role and role >= Role.ADMIN
    return role >= needed


@dataclass(frozen=True)
class Caller:
    base_url: str
    session: requests.Session
    headers: dict


def exercise(operation, identity: str, caller: Caller, figures: Counter, failures: list) -> None:
    """Generated calls to one operation as one identity; what went wrong lands in ``failures``."""

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def call(case):
        response = case.call(
            base_url=caller.base_url, session=caller.session, headers=caller.headers
        )
        figures["calls"] += 1
        status = response.status_code
        where = f"{identity} {case.method} {case.formatted_path} -> {status}"
        if status >= 500:
            failures.append(f"server error: {where}")
            figures["5xx"] += 1
        needed = needed_role(case.method, case.formatted_path)
        if needed == UNROUTED:
            if status not in (401, 404):  # 401: the generator sent a made-up token
                failures.append(f"an unrouted path answered: {where}")
            return
        role = ROLES.get(identity)
        if role is None or needed is None or not within(role, needed):
            figures["denials checked"] += 1
            if status not in (401, 403):
                failures.append(f"beyond the role: {where}")
        elif status in (401, 403):
            failures.append(f"refused within the role: {where}")

    call()
