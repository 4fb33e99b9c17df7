"""No page is anonymous: every URL in the URLconf sends a stranger to the sign-in page."""

from __future__ import annotations

import pytest

from console.roles import Role, set_role
from tests.routes import all_patterns, url_of

pytestmark = pytest.mark.django_db

PUBLIC = {"login"}  # the sign-in page itself


def test_every_route_requires_login(client):
    checked = 0
    for pattern, route in all_patterns():
        if pattern.name in PUBLIC:
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(url_of(route))
            assert response.status_code in (302, 401, 403), (
                f"{method.upper()} {route} answered {response.status_code}"
            )
            if response.status_code == 302:
                assert response.url.startswith("/login/"), f"{route} redirects to {response.url}"
            checked += 1
    assert checked >= 8


def test_login_page_is_reachable_and_signs_in(client, django_user_model):
    set_role(
        django_user_model.objects.create_user("ana", password="a-long-enough-password"), Role.VIEWER
    )
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "ana", "password": "a-long-enough-password"})
    assert response.status_code == 302 and response.url == "/"
    assert client.get("/messages/").status_code == 200
