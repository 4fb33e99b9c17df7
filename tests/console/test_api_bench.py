"""The test bench through the API: dry runs, samples, accepting an output and the suite."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from channels_app.models import ChannelSample, Destination, Message
from console.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel():
    channel = factories.channel(40411)
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    return channel


def post(client, url, data):
    return client.post(url, data, content_type="application/json")


def test_a_dry_run_answers_every_part(analyst, channel):
    raw = factories.adt_a01("API-DRY").decode()
    answer = post(analyst, f"/api/v1/channels/{channel.pk}/test/", {"raw": raw})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) >= {"parse_tree", "bundle", "issues", "routing", "outputs"}
    assert body["routing"][0]["routed"] is True
    assert "FHIR sink" in body["outputs"] and body["error"] is None
    assert not Message.objects.exists()


def test_an_unreadable_message_answers_the_codec_error(analyst, channel):
    answer = post(analyst, f"/api/v1/channels/{channel.pk}/test/", {"raw": "MSH|^~\\&|A\rPID"})
    body = answer.json()
    assert answer.status_code == 200 and body["error"]["stage"] == "parse"
    assert body["error"]["detail"]


def test_neither_raw_nor_sample_is_refused(analyst, channel):
    assert post(analyst, f"/api/v1/channels/{channel.pk}/test/", {}).status_code == 400


def test_accept_then_change_a_route_and_the_suite_says_changed(analyst, channel):
    raw = factories.adt_a01("API-SUITE").decode()
    made = post(analyst, "/api/v1/samples/", {"channel": channel.pk, "name": "adt", "raw": raw})
    assert made.status_code == 201
    sample = made.json()["id"]
    assert post(analyst, f"/api/v1/samples/{sample}/accept/", {}).json()["accepted"]
    suite = post(analyst, f"/api/v1/channels/{channel.pk}/suite/", {}).json()
    assert suite["counts"]["passed"] == 1
    Destination.objects.filter(channel=channel).update(route_when="%messageCode = 'ORU'")
    suite = post(analyst, f"/api/v1/channels/{channel.pk}/suite/", {}).json()
    assert suite["counts"]["changed"] == 1
    diff = suite["samples"][0]["diff"]
    assert '-      "routed": true' in diff and '+      "routed": false' in diff
    ran = post(analyst, f"/api/v1/channels/{channel.pk}/test/", {"sample": sample}).json()
    assert ran["outputs"] == {}


def test_the_suite_runs_on_the_draft_before_it_is_published(analyst, channel):
    raw = factories.adt_a01("API-DRAFT").decode()
    sample = post(analyst, "/api/v1/samples/", {"channel": channel.pk, "name": "a", "raw": raw})
    post(analyst, f"/api/v1/samples/{sample.json()['id']}/accept/", {})
    url = f"/api/v1/channels/{channel.pk}/suite/"
    assert post(analyst, url + "?against=draft", {}).json() == {
        "against": ["the channel has no draft"]
    }
    destination = channel.destinations.get()
    answer = analyst.patch(
        f"/api/v1/destinations/{destination.pk}/",
        {"route_when": "%messageCode = 'ORU'"},
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.content  # saved to the draft, not live
    on_draft = post(analyst, url + "?against=draft", {}).json()
    assert on_draft["against"] == "draft" and on_draft["counts"]["changed"] == 1
    assert "+++ draft" in on_draft["samples"][0]["diff"]
    assert any(place.startswith("routing[0]") for place in on_draft["samples"][0]["changed"])
    live = post(analyst, url, {}).json()
    assert live["against"] == "live" and live["counts"]["passed"] == 1
    assert post(analyst, url + "?against=tomorrow", {}).status_code == 400


def test_a_duplicate_sample_name_is_refused_naming_the_field(analyst, channel):
    data = {"channel": channel.pk, "name": "one", "raw": "MSH|^~\\&|A"}
    assert post(analyst, "/api/v1/samples/", data).status_code == 201
    answer = post(analyst, "/api/v1/samples/", data)
    assert answer.status_code == 400 and "name" in answer.json()


def test_copying_a_stored_body_is_audited_as_a_phi_view(analyst, channel):
    message = Message.objects.create(channel=channel, raw=factories.adt_a01("COPY-1"))
    data = {"channel": channel.pk, "name": "copied", "message": message.pk}
    answer = post(analyst, "/api/v1/samples/", data)
    assert answer.status_code == 201
    sample = ChannelSample.objects.get(pk=answer.json()["id"])
    assert "COPY-1" in sample.raw
    event = AuditEvent.objects.get(action="phi.copied_to_sample")
    assert event.target == f"message:{message.pk}" and event.detail["sample"] == sample.pk
    assert "COPY-1" not in str(event.detail)


def test_a_sample_is_deleted_with_an_audit_entry(analyst, channel):
    sample = ChannelSample.objects.create(channel=channel, name="gone", raw="MSH|^~\\&|A")
    assert analyst.delete(f"/api/v1/samples/{sample.pk}/").status_code == 204
    assert AuditEvent.objects.filter(action="sample.deleted").exists()


def test_a_sample_and_its_accepted_output_are_sealed_at_rest(analyst, channel, settings):
    settings.HUB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    raw = factories.adt_a01("SEALED-1", family="SEALEDNAME").decode()
    made = post(analyst, "/api/v1/samples/", {"channel": channel.pk, "name": "s", "raw": raw})
    post(analyst, f"/api/v1/samples/{made.json()['id']}/accept/", {})
    stored = ChannelSample.objects.values_list("raw_sealed", "accepted_sealed").get()
    assert all(b"SEALEDNAME" not in bytes(value) for value in stored)
    sample = ChannelSample.objects.get()
    assert "SEALEDNAME" in sample.raw and "SEALEDNAME" in str(sample.accepted)
    suite = post(analyst, f"/api/v1/channels/{channel.pk}/suite/", {}).json()
    assert suite["counts"]["passed"] == 1


def test_a_sample_is_renamed_and_its_message_replaced(analyst, channel):
    sample = ChannelSample.objects.create(channel=channel, name="old", raw="MSH|^~\\&|A")
    ChannelSample.objects.create(channel=channel, name="taken", raw="MSH|^~\\&|A")
    url = f"/api/v1/samples/{sample.pk}/"
    clash = analyst.patch(url, {"name": "taken"}, content_type="application/json")
    assert clash.status_code == 400 and "name" in clash.json()
    raw = factories.adt_a01("PATCHED").decode()
    answer = analyst.patch(url, {"name": "new", "raw": raw}, content_type="application/json")
    assert answer.status_code == 200 and answer.json()["name"] == "new"
    sample.refresh_from_db()
    assert "PATCHED" in sample.raw
    event = AuditEvent.objects.get(action="sample.updated")
    assert event.detail["changed"] == ["name", "raw"] and "PATCHED" not in str(event.detail)
