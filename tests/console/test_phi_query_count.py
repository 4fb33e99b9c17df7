"""Masking against each message's own PHI values stays cheap: a list reads the bodies it needs in
one query for the whole page, and an attempt log reads its message once, however many rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Attempt, Delivery, Message
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel():
    return factories.channel(40701)


def failed_messages(channel, count: int) -> list[Message]:
    """Messages stopped with an error that repeats the patient's name, unquoted."""
    return [
        Message.objects.create(
            channel=channel,
            raw=factories.adt_a01(f"QC-{n}", family=f"ZQCOUNT{n:02d}"),
            status=Message.Status.ERROR,
            error_stage="route",
            error_class="RouteError",
            error_detail=f"no destination takes patient ZQCOUNT{n:02d} JANE",
        )
        for n in range(count)
    ]


def queries(client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured), response.content.decode()


@pytest.mark.parametrize("url", ["/messages/", "/api/v1/messages/"])
def test_a_list_masks_every_row_with_the_same_number_of_queries(viewer_user, channel, url):
    client = signed_in(viewer_user)
    failed_messages(channel, 2)
    few, _ = queries(client, url)
    failed_messages(channel, 8)
    many, text = queries(client, url)
    assert many == few
    assert "no destination takes patient" in text
    assert "ZQCOUNT" not in text and "JANE" not in text


def test_the_attempt_log_reads_its_message_once(viewer_user, channel):
    (message,) = failed_messages(channel, 1)
    destination = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir")
    delivery = Delivery.objects.create(message=message, destination=destination)
    client = signed_in(viewer_user)
    url = f"/api/v1/deliveries/{delivery.pk}/attempts/"

    def attempt(number: int) -> None:
        Attempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=timezone.now(),
            duration_ms=1.0,
            outcome=Attempt.Outcome.TRANSIENT,
            status_code=503,
            error=f"answered 503: ZQCOUNT00 JANE is locked (try {number})",
        )

    attempt(1)
    few, _ = queries(client, url)
    for number in range(2, 7):
        attempt(number)
    many, text = queries(client, url)
    assert many == few
    assert text.count("is locked") == 6 and "ZQCOUNT" not in text and "JANE" not in text
