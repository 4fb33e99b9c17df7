"""The message list shows the latest traffic with status; the detail page shows everything."""

from __future__ import annotations

import pytest
from django.utils import timezone

from channels_app.models import Attempt, Delivery, Message
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client):
    client.force_login(factories.user("op", Role.OPERATOR))
    return client


@pytest.fixture
def traffic():
    channel = factories.channel(40001)
    destination = factories.fhir_destination(channel, "http://fhir.example/fhir")
    ok = Message.objects.create(
        channel=channel,
        raw=factories.adt_a01("OK-1"),
        message_type="ADT^A01",
        control_id="OK-1",
        status=Message.Status.PROCESSED,
        canonical={"resourceType": "Bundle", "type": "transaction", "entry": []},
    )
    bad = Message.objects.create(
        channel=channel,
        raw=b"PID|1",
        status=Message.Status.ERROR,
        error_stage="parse",
        error_class="HL7Error",
        error_path="MSH",
        error_detail="a message must start with an MSH segment",
    )
    delivery = Delivery.objects.create(
        message=ok, destination=destination, status=Delivery.Status.DELIVERED
    )
    Attempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        duration_ms=12.5,
        outcome=Attempt.Outcome.SUCCESS,
        status_code=200,
        response_summary="Bundle transaction-response: 201",
    )
    return ok, bad


def test_list_shows_latest_first_with_status_and_deliveries(signed_in, traffic):
    ok, bad = traffic
    html = signed_in.get("/messages/").content.decode()
    assert html.index(f"/messages/{bad.pk}/") < html.index(f"/messages/{ok.pk}/")
    assert "OK-1" in html and 'data-destination-state="DELIVERED"' in html
    assert 'data-outcome="DELIVERED"' in html and 'data-outcome="ERROR"' in html
    assert "a message must start with an MSH segment" in html


def test_list_filters_by_status_and_htmx_gets_only_rows(signed_in, traffic):
    ok, bad = traffic
    response = signed_in.get("/messages/?status=ERROR", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html and f"/messages/{bad.pk}/" in html and "OK-1" not in html


def test_detail_shows_raw_canonical_deliveries_and_attempts(signed_in, traffic):
    ok, _ = traffic
    html = signed_in.get(f"/messages/{ok.pk}/").content.decode()
    assert "EVN|A01" in html and "&quot;resourceType&quot;: &quot;Bundle&quot;" in html
    assert "FHIR sink" in html and "12.5 ms" in html and "Bundle transaction-response: 201" in html


def test_detail_of_an_error_names_stage_place_and_reason(signed_in, traffic):
    _, bad = traffic
    html = signed_in.get(f"/messages/{bad.pk}/").content.decode()
    assert "Stopped at the parse stage" in html and "<code>MSH</code>" in html
    assert "must start with an MSH segment" in html


def test_channels_page_lists_source_destinations_and_counts(signed_in, traffic):
    html = signed_in.get("/channels/").content.decode()
    assert (
        "127.0.0.1:40001" in html
        and "FHIR sink" in html
        and "2 messages</a>" in html  # in the last hour
        and "1 error</a>" in html
    )


def test_unknown_message_is_404(signed_in):
    assert signed_in.get("/messages/999999/").status_code == 404
