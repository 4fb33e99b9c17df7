"""A channel's source settings are checked when saved, against its source type's schema: a bad one
is refused naming the key, and never reaches a listener that would refuse to start on it."""

from __future__ import annotations

import pytest

from channels_app.models import Channel
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


def patch(user, channel, **fields):
    return signed_in(user).patch(
        f"/api/v1/channels/{channel.pk}/", fields, content_type="application/json"
    )


@pytest.mark.parametrize(
    ("source_config", "names"),
    [
        ({"host": "127.0.0.1"}, "port: Field required"),
        ({"port": 70000}, "port: Input should be less than or equal to 65535"),
        ({"port": 2575, "ack_mode": "loud"}, "ack_mode"),
        ({"port": 2575, "idle_timeout_s": -1}, "idle_timeout_s"),
        ({"port": 2575, "mllp_release": 3}, "mllp_release"),
    ],
)
def test_a_bad_mllp_source_is_refused_naming_the_key(analyst_user, source_config, names):
    channel = factories.channel(40801)
    response = patch(analyst_user, channel, source_config=source_config)
    assert response.status_code == 400
    assert names in response.json()["source_config"][0]
    channel.refresh_from_db()
    assert channel.source_config == {"host": "127.0.0.1", "port": 40801}


def test_a_file_pickup_needs_its_directory(analyst_user):
    channel = factories.channel(40802)
    response = patch(analyst_user, channel, source_type="file", source_config={"glob": "*.hl7"})
    assert response.status_code == 400
    assert "directory: Field required" in response.json()["source_config"][0]


def test_good_sources_are_saved(analyst_user, tmp_path):
    channel = factories.channel(40803)
    ok = patch(analyst_user, channel, source_config={"port": 40803, "ack_mode": "enhanced"})
    assert ok.status_code == 200, ok.content
    assert ok.json()["source_config"]["ack_mode"] == "enhanced"  # the draft holds it
    pickup = {"directory": str(tmp_path), "glob": "*.txt"}
    ok = patch(analyst_user, channel, source_type="file", source_config=pickup)
    assert ok.status_code == 200, ok.content
    published = signed_in(analyst_user).post(f"/api/v1/channels/{channel.pk}/draft/publish/")
    assert published.status_code == 201, published.content
    channel.refresh_from_db()
    assert channel.source_type == Channel.SourceType.FILE and channel.source_config == pickup
