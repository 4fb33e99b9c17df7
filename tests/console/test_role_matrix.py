"""Every route in the URLconf, every method, every role: allowed or denied as the table says.

A route missing from MATRIX, or a view without a role declaration, fails this suite: a new page
must be given its place here before it can ship.
"""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import path

from channels_app.models import Message
from console import urls as console_urls
from console.access import PUBLIC, SIGNED_IN, declared, is_api_view
from console.roles import RESEND_EDITED, Permission, Role
from tests import factories
from tests.routes import all_patterns, url_of

pytestmark = pytest.mark.django_db

VIEWER, OPERATOR, ANALYST, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ANALYST, Role.ADMIN

# Route name -> minimum access per method (PUBLIC: anyone; SIGNED_IN: any signed-in user).
MATRIX = {
    "home": {"GET": VIEWER, "POST": VIEWER},
    "dashboard-data": {"GET": VIEWER, "POST": VIEWER},
    "login": {"GET": PUBLIC, "POST": PUBLIC},
    "logout": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "messages": {"GET": VIEWER, "POST": VIEWER},
    "message": {"GET": VIEWER, "POST": VIEWER},
    "message-reveal": {"GET": OPERATOR, "POST": OPERATOR},
    "message-replay": {"GET": OPERATOR, "POST": OPERATOR},
    "message-replay-bulk": {"GET": OPERATOR, "POST": OPERATOR},
    "replay-job": {"GET": OPERATOR, "POST": OPERATOR},
    "replay-job-pause": {"GET": OPERATOR, "POST": OPERATOR},
    "replay-job-resume": {"GET": OPERATOR, "POST": OPERATOR},
    "replay-job-cancel": {"GET": OPERATOR, "POST": OPERATOR},
    "message-resend": {"GET": RESEND_EDITED, "POST": RESEND_EDITED},
    "channels": {"GET": VIEWER, "POST": VIEWER},
    "channel-new": {"GET": ANALYST, "POST": ANALYST},
    "channels-export": {"GET": ANALYST, "POST": ANALYST},
    "channels-import": {"GET": ADMIN, "POST": ADMIN},
    "channel-export": {"GET": ANALYST, "POST": ANALYST},
    "channel-edit": {"GET": ANALYST, "POST": ANALYST},
    "channel-clone": {"GET": ANALYST, "POST": ANALYST},
    "channel-enable": {"GET": ANALYST, "POST": ANALYST},
    "channel-disable": {"GET": ANALYST, "POST": ANALYST},
    "channel-archive": {"GET": ANALYST, "POST": ANALYST},
    "channel-restore": {"GET": ANALYST, "POST": ANALYST},
    "channel-delete": {"GET": ANALYST, "POST": ANALYST},
    "channel-source-state": {"GET": VIEWER, "POST": VIEWER},
    "channel-pause": {"GET": OPERATOR, "POST": OPERATOR},
    "channel-resume": {"GET": OPERATOR, "POST": OPERATOR},
    "mapping": {"GET": VIEWER, "POST": VIEWER},
    "mapping-save": {"GET": ANALYST, "POST": ANALYST},
    "mapping-preview": {"GET": ANALYST, "POST": ANALYST},
    "channel-publish": {"GET": ANALYST, "POST": ANALYST},
    "channel-draft-discard": {"GET": ANALYST, "POST": ANALYST},
    "channel-versions": {"GET": VIEWER, "POST": VIEWER},
    "channel-rollback": {"GET": ADMIN, "POST": ADMIN},
    "bench": {"GET": ANALYST, "POST": ANALYST},
    "bench-run": {"GET": ANALYST, "POST": ANALYST},
    "bench-sample-new": {"GET": ANALYST, "POST": ANALYST},
    "bench-sample-copy": {"GET": ANALYST, "POST": ANALYST},
    "bench-suite": {"GET": ANALYST, "POST": ANALYST},
    "bench-sample-run": {"GET": ANALYST, "POST": ANALYST},
    "bench-sample-accept": {"GET": ANALYST, "POST": ANALYST},
    "bench-sample-delete": {"GET": ANALYST, "POST": ANALYST},
    "destination-new": {"GET": ANALYST, "POST": ANALYST},
    "destination-edit": {"GET": ANALYST, "POST": ANALYST},
    "destination-pause": {"GET": OPERATOR, "POST": OPERATOR},
    "destination-resume": {"GET": OPERATOR, "POST": OPERATOR},
    "alerts": {"GET": VIEWER, "POST": VIEWER},
    "alert-acknowledge": {"GET": OPERATOR, "POST": OPERATOR},
    "alert-resolve": {"GET": OPERATOR, "POST": OPERATOR},
    "alert-rule-new": {"GET": ANALYST, "POST": ANALYST},
    "alert-rule-edit": {"GET": ANALYST, "POST": ANALYST},
    "audit": {"GET": ADMIN, "POST": ADMIN},
    "audit-export": {"GET": ADMIN, "POST": ADMIN},
    "audit-unlock": {"GET": ADMIN, "POST": ADMIN},
    "system": {"GET": ADMIN, "POST": ADMIN},
    "api-docs": {"GET": VIEWER, "POST": VIEWER},
}
IDENTITIES = ("anonymous", "none", "viewer", "operator", "analyst", "admin", "resender")
ROLE_OF = {
    "viewer": VIEWER,
    "operator": OPERATOR,
    "analyst": ANALYST,
    "admin": ADMIN,
    "resender": OPERATOR,
}
# Who holds a permission no role implies, besides admins: the operator it was granted to.
GRANTED = {RESEND_EDITED: {"resender"}}

# Websocket route, as console/routing.py writes it (e.g. "ws/dashboard/") -> the access its
# consumer declares; connect() checks access.decide() on that declaration.
WEBSOCKET_MATRIX = {"ws/dashboard/": VIEWER}  # refusals: test_dashboard_consumer


def page_patterns():
    """The console's pages; API views have their own table (test_api_role_matrix)."""
    return [(p, route) for p, route in all_patterns() if not is_api_view(p.callback)]


def expected_allowed(access, identity: str) -> bool:
    if access == PUBLIC:
        return True
    if identity == "anonymous":
        return False
    if access == SIGNED_IN:
        return True
    role = ROLE_OF.get(identity)
    if isinstance(access, Permission):
        held = role == ADMIN or identity in GRANTED[access]
        return role is not None and role >= access.role and held
    return role is not None and role >= access


def answer(response) -> str:
    """'denied-login' (sent to sign in), 'denied' (403 from the role check) or 'allowed'."""
    if response.status_code == 302 and "/login/?next=" in response.url:
        return "denied-login"
    if response.status_code == 403:
        return "denied"
    return "allowed"


@pytest.fixture
def message():
    channel = factories.channel(40101)
    return Message.objects.create(
        channel=channel, raw=factories.adt_a01("MATRIX-1"), message_type="ADT^A01"
    )


def test_every_view_declares_its_role():
    undeclared = [route for p, route in page_patterns() if declared(p.callback) is None]
    assert not undeclared, f"views without a role declaration: {undeclared}"


def websocket_routes(patterns=None, prefix=""):
    """(route, consumer class) for every websocket route, nested URLRouters walked."""
    from console.routing import websocket_urlpatterns

    for p in websocket_urlpatterns if patterns is None else patterns:
        route = prefix + str(p.pattern)
        nested = getattr(p.callback, "routes", None)
        if nested is not None:
            yield from websocket_routes(nested, route)
        else:
            yield route, getattr(p.callback, "consumer_class", p.callback)


def test_every_websocket_route_is_in_the_table_and_declares_its_role():
    routes = dict(websocket_routes())
    assert routes.keys() == WEBSOCKET_MATRIX.keys(), (
        f"websocket routes missing from WEBSOCKET_MATRIX: {routes.keys() - WEBSOCKET_MATRIX.keys()};"
        f" rows without a route: {WEBSOCKET_MATRIX.keys() - routes.keys()}"
    )
    checked = 0
    for route, consumer in routes.items():
        assert declared(consumer) is not None, f"{route}: {consumer.__name__} declares no role"
        assert declared(consumer) == WEBSOCKET_MATRIX[route], f"{route}: table says otherwise"
        checked += 1
    assert checked == len(WEBSOCKET_MATRIX)


def test_the_websocket_walk_finds_consumers_and_their_declarations():
    """The check above could pass by finding nothing: here it must find a nested, undeclared
    consumer and a declared one."""
    from channels.generic.websocket import WebsocketConsumer
    from channels.routing import URLRouter

    from console.access import requires

    class Undeclared(WebsocketConsumer):
        pass

    @requires(VIEWER)
    class Declared(WebsocketConsumer):
        pass

    patterns = [
        path("ws/declared/", Declared.as_asgi()),
        path("ws/nested/", URLRouter([path("undeclared/", Undeclared.as_asgi())])),
    ]
    found = {route: declared(consumer) for route, consumer in websocket_routes(patterns)}
    assert found == {"ws/declared/": VIEWER, "ws/nested/undeclared/": None}


def test_every_route_is_in_the_table():
    names = {p.name for p, _ in page_patterns()}
    assert None not in names, "every route needs a name to have a row in MATRIX"
    assert names - MATRIX.keys() == set(), f"routes missing from MATRIX: {names - MATRIX.keys()}"
    assert MATRIX.keys() - names == set(), f"MATRIX rows without a route: {MATRIX.keys() - names}"


def test_table_matches_declarations():
    for p, route in page_patterns():
        for method, access in MATRIX[p.name].items():
            assert declared(p.callback) == access, f"{method} {route}: table says {access}"


def test_role_matrix(users, message):
    checked = 0
    failures = []
    for p, route in page_patterns():
        url = url_of(route, message.pk)
        for method, access in MATRIX[p.name].items():
            for identity in IDENTITIES:
                client = Client()
                if identity != "anonymous":
                    client.force_login(users[identity])
                response = getattr(client, method.lower())(url)
                got = answer(response)
                want = expected_allowed(access, identity)
                if want and got != "allowed":
                    failures.append(f"{identity} {method} {url}: refused ({response.status_code})")
                if not want and got == "allowed":
                    failures.append(f"{identity} {method} {url}: allowed ({response.status_code})")
                if not want and identity == "anonymous" and got != "denied-login":
                    failures.append(f"anonymous {method} {url}: not sent to sign in")
                checked += 1
    assert not failures, "\n".join(failures)
    assert checked == len(IDENTITIES) * sum(len(m) for m in MATRIX.values())


def test_no_role_user_is_told_to_ask_an_admin(client, no_role_user):
    client.force_login(no_role_user)
    response = client.get("/messages/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "Your account has no role; ask an admin" in html and 'id="access-denied"' in html
    assert "Sign out" in html  # they can still leave


def test_a_role_too_low_is_told_which_role_is_needed(client, viewer_user, message):
    client.force_login(viewer_user)
    response = client.post(f"/messages/{message.pk}/reveal/")
    assert response.status_code == 403
    assert "needs the operator role; your role is viewer" in response.content.decode()


def undeclared_view(request):
    return HttpResponse("should never be served")


# Used as the URLconf of the next test only: the console's routes plus one undeclared view.
urlpatterns = [path("undeclared/", undeclared_view, name="undeclared"), *console_urls.urlpatterns]


@pytest.mark.urls("tests.console.test_role_matrix")
def test_an_undeclared_view_is_refused_even_to_admins(client, hub_admin_user):
    client.force_login(hub_admin_user)
    response = client.get("/undeclared/")
    assert response.status_code == 403
    assert "does not declare who may open it" in response.content.decode()


def test_superuser_counts_as_admin(client, django_user_model, message):
    client.force_login(django_user_model.objects.create_superuser("root", password="x" * 16))
    assert client.post(f"/messages/{message.pk}/reveal/").status_code == 200


def test_static_files_need_no_sign_in(client):
    assert client.get("/static/console/console.css").status_code == 200


def test_django_admin_is_not_routed(client, hub_admin_user):
    client.force_login(hub_admin_user)
    assert client.get("/admin/").status_code == 404
