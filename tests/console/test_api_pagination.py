"""API lists page by limit/offset; a limit beyond the ceiling (even past bigint) is capped."""

from __future__ import annotations

import pytest
from django.test import Client

from channels_app.models import Message
from console.api.pagination import MAX_LIMIT
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_huge_limit_is_capped_not_a_server_error(viewer_user):
    channel = factories.channel(41001)
    Message.objects.bulk_create(Message(channel=channel, raw=b"MSH|") for _ in range(3))
    client = Client()
    client.force_login(viewer_user)
    for limit in ("99999999999999999999", str(2**63 - 1), str(MAX_LIMIT + 1)):
        response = client.get(f"/api/v1/messages/?limit={limit}")
        assert response.status_code == 200, limit
        assert response.json()["count"] == 3 and len(response.json()["results"]) == 3
    page = client.get("/api/v1/messages/?limit=2&offset=2").json()
    assert len(page["results"]) == 1 and page["previous"]
