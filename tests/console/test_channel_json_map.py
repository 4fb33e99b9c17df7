"""A channel's custom JSON map is checked when it is saved through the API (the rule and the part
at fault named), and a viewer sees a custom JSON body with every value masked."""

from __future__ import annotations

import json

import pytest

from adapters.codecs import custom_json
from channels_app.models import Channel, Message
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

JSON_MAP = {
    "resources": ["Patient"],
    "rules": [
        {"name": "mrn", "source": "%input.mrn", "target": "Patient.identifier[0].value"},
        {"name": "family", "source": "%input.last", "target": "Patient.name[0].family"},
    ],
}


def save(client, channel, source_config, method="patch"):
    return getattr(client, method)(
        f"/api/v1/channels/{channel.pk}/?publish=true",
        {"name": channel.name, "source_type": "http", "source_config": source_config},
        content_type="application/json",
    )


def test_a_map_that_compiles_is_saved(analyst_user):
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    config = {"inbound": "json", "json_map": JSON_MAP}
    response = save(signed_in(analyst_user), channel, config, method="put")
    assert response.status_code == 200, response.content
    channel.refresh_from_db()
    assert channel.source_config == config


def test_custom_json_is_refused_on_an_mllp_channel(analyst_user):
    channel = factories.channel(40701)
    response = signed_in(analyst_user).patch(
        f"/api/v1/channels/{channel.pk}/",
        {"source_config": {"port": 40701, "inbound": "json", "json_map": JSON_MAP}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "HTTP inbound only" in response.json()["source_config"][0]


@pytest.mark.parametrize("method", ["put", "patch"])
def test_a_map_that_does_not_compile_is_refused_naming_the_rule_and_part(analyst_user, method):
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    rules = [dict(r) for r in JSON_MAP["rules"]]
    rules[1]["source"] = "%input.last."
    response = save(
        signed_in(analyst_user),
        channel,
        {"inbound": "json", "json_map": {**JSON_MAP, "rules": rules}},
        method,
    )
    assert response.status_code == 400
    [error] = response.json()["source_config"]
    assert error.startswith("json_map.rules[1].source: rule #2 ('family'), source '%input.last.'")
    assert "FHIRPath syntax error" in error
    channel.refresh_from_db()
    assert channel.source_config == {}


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"inbound": "json"}, "json_map: is required"),
        (
            {"inbound": "xml", "json_map": JSON_MAP},
            "inbound: 'json' (custom JSON with a json_map) or left out",
        ),
        ({"inbound": "json", "json_map": {"rules": JSON_MAP["rules"]}}, "json_map.resources"),
    ],
)
def test_an_incomplete_json_source_is_refused(analyst_user, config, says):
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    response = save(signed_in(analyst_user), channel, config)
    assert response.status_code == 400
    assert says in response.json()["source_config"][0]


def test_a_viewer_sees_custom_json_keys_but_no_values(viewer_user):
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    message = Message.objects.create(
        channel=channel,
        raw=json.dumps({"mrn": "MRN-4242", "last": "Abernathy", "tags": ["vip"]}).encode(),
        content_type=custom_json.MEDIA_TYPE,
        status=Message.Status.PROCESSED,
    )
    body = signed_in(viewer_user).get(f"/api/v1/messages/{message.pk}/body/").json()
    assert json.loads(body["raw"]) == {"mrn": "***", "last": "***", "tags": ["***"]}
