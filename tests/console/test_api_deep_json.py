"""Config endpoints read JSON through the bounded reader: too deep or too large a body is a 400
naming the problem, never a 500 (RecursionError) and never stored."""

from __future__ import annotations

import json

import pytest

from adapters.codecs.bounded_json import MAX_DEPTH
from channels_app.models import Channel
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

DEPTH = 50_000


def deep(depth: int = DEPTH) -> str:
    return "[" * depth + "]" * depth


def post_json(client, url: str, text: str, method: str = "post"):
    return getattr(client, method)(url, data=text, content_type="application/json")


def test_a_deeply_nested_channel_is_refused_naming_the_depth(analyst_user):
    client = signed_in(analyst_user)
    body = '{"name": "deep", "source_type": "http", "source_config": {"x": ' + deep() + "}}"
    response = post_json(client, "/api/v1/channels/", body)
    assert response.status_code == 400
    assert f"nested deeper than {MAX_DEPTH} levels" in response.json()["detail"]
    assert not Channel.objects.filter(name="deep").exists()


def test_a_deeply_nested_destination_config_is_refused(analyst_user):
    channel = factories.channel(40611)
    hook = factories.fhir_destination(channel, "http://fhir.example/fhir")
    client = signed_in(analyst_user)
    body = '{"config": {"base_url": "http://fhir.example/fhir", "headers": ' + deep() + "}}"
    response = post_json(client, f"/api/v1/destinations/{hook.pk}/", body, method="patch")
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_a_body_over_the_upload_limit_is_refused(analyst_user, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = signed_in(analyst_user)
    body = json.dumps({"name": "big", "description": "x" * 2000, "source_type": "http"})
    response = post_json(client, "/api/v1/channels/", body)
    assert response.status_code == 400  # Django's own bound on a request body, before parsing
    assert not Channel.objects.filter(name="big").exists()


def test_nesting_within_the_limit_is_read_as_before(analyst_user):
    client = signed_in(analyst_user)
    rules = [{"source": "id", "target": "Patient.id"}]
    source = {"inbound": "json", "json_map": {"resources": ["Patient"], "rules": rules}}
    body = json.dumps({"name": "shallow", "source_type": "http", "source_config": source})
    response = post_json(client, "/api/v1/channels/", body)
    assert response.status_code == 201, response.content
