"""The test bench page: run a pasted message, save it, accept it, and see the suite's diff."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from channels_app import drafts
from channels_app.models import ChannelSample, Destination, Message
from console.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def channel():
    channel = factories.channel(40511)
    factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    return channel


def pasted(control_id: str) -> str:
    return factories.adt_a01(control_id).decode().replace("\r", "\n")


def test_the_page_lists_the_channels_samples(analyst, channel):
    ChannelSample.objects.create(channel=channel, name="kept adt", raw="MSH|^~\\&|A")
    page = analyst.get(f"/channels/{channel.pk}/bench/").content.decode()
    assert "Test bench" in page and "kept adt" in page


def test_a_pasted_message_runs_side_by_side(analyst, channel):
    answer = analyst.post(f"/channels/{channel.pk}/bench/run/", {"raw": pasted("PAGE-1")}, **HTMX)
    html = answer.content.decode()
    assert 'data-path="PID-3(1).1"' in html
    assert 'data-destination="FHIR sink" data-routed="true"' in html
    assert 'data-output="FHIR sink"' in html and "PAGE-1" in html
    assert not Message.objects.exists()


def test_an_uploaded_file_runs_too(analyst, channel):
    upload = SimpleUploadedFile("adt.hl7", factories.adt_a01("UPLOAD-1"))
    answer = analyst.post(f"/channels/{channel.pk}/bench/run/", {"file": upload}, **HTMX)
    assert "UPLOAD-1" in answer.content.decode()


def test_an_empty_run_says_what_is_missing(analyst, channel):
    answer = analyst.post(f"/channels/{channel.pk}/bench/run/", {"raw": " "}, **HTMX)
    assert "paste a message or choose a file" in answer.content.decode()


def test_save_accept_change_a_rule_and_run_all_shows_the_diff(analyst, channel):
    data = {"raw": pasted("PAGE-2"), "name": "adt one"}
    analyst.post(f"/channels/{channel.pk}/bench/samples/", data, **HTMX)
    sample = ChannelSample.objects.get(channel=channel, name="adt one")
    assert "\r" in sample.raw and "\n" not in sample.raw
    analyst.post(f"/bench/samples/{sample.pk}/accept/", **HTMX)
    html = analyst.post(f"/channels/{channel.pk}/bench/suite/", **HTMX).content.decode()
    assert 'data-status="passed"' in html
    Destination.objects.filter(channel=channel).update(route_when="%messageCode = 'ORU'")
    html = analyst.post(f"/channels/{channel.pk}/bench/suite/", **HTMX).content.decode()
    assert 'data-status="changed"' in html and 'class="diff-del"' in html
    assert AuditEvent.objects.filter(action="sample.accepted").count() == 1


def test_copying_a_stored_message_is_audited(analyst, channel):
    message = Message.objects.create(channel=channel, raw=factories.adt_a01("PAGE-COPY"))
    data = {"message": str(message.pk), "name": "from traffic"}
    html = analyst.post(f"/channels/{channel.pk}/bench/copy/", data, **HTMX).content.decode()
    assert "from traffic" in html
    assert AuditEvent.objects.filter(
        action="phi.copied_to_sample", target=f"message:{message.pk}"
    ).exists()


def test_copying_an_unknown_message_says_so(analyst, channel):
    data = {"message": "999999", "name": "nothing"}
    html = analyst.post(f"/channels/{channel.pk}/bench/copy/", data, **HTMX).content.decode()
    assert "no stored message" in html and not ChannelSample.objects.exists()


def test_run_all_on_the_draft_shows_what_a_drafted_field_rule_changes(analyst, channel):
    raw = factories.adt_a01("PAGE-3", family="quiet").decode()
    sample = ChannelSample.objects.create(channel=channel, name="adt draft", raw=raw)
    analyst.post(f"/bench/samples/{sample.pk}/accept/", **HTMX)
    rule = {"source": "PID-5(1).1", "target": "Patient.name[0].family", "transforms": ["upper"]}
    drafts.save_draft(channel, {**drafts.draft_of(channel), "mapping": {"rules": [rule]}})

    on_draft = {"against": "draft"}
    html = analyst.post(f"/channels/{channel.pk}/bench/suite/", on_draft, **HTMX).content.decode()
    assert 'data-status="changed"' in html and 'data-ran-against="draft"' in html
    assert re.search(r'diff-del">-\s+&quot;family&quot;: &quot;quiet&quot;', html)
    assert re.search(r'diff-add">\+\s+&quot;family&quot;: &quot;QUIET&quot;', html)
    assert "+++ draft" in html
    assert "<code>Patient.name[0].family</code>" in html  # where, above the diff

    html = analyst.post(f"/channels/{channel.pk}/bench/suite/", **HTMX).content.decode()
    assert 'data-status="passed"' in html and 'data-ran-against="live"' in html
