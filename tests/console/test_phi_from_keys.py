"""The business keys stored at processing (names, identifiers, birth date, visit) are masked in the
free text a viewer reads about the message, even where its body no longer says them, read for a
whole list in the same number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from adapters import keys
from channels_app.models import Message, MessageKey
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

# A body with no person in it (a header only): its PHI values are its keys alone.
HEADER_ONLY = b"MSH|^~\\&|EHR|CITY|HUB|HUB|20240101000000||ADT^A08|K-1|P|2.5.1\r"
DETAIL = "patient Quixotevarga (ABQ-4471, visit VQ-88, born 19610215) matched no rule"


def errored(channel, with_keys: bool) -> Message:
    message = Message.objects.create(
        channel=channel,
        raw=HEADER_ONLY,
        status=Message.Status.ERROR,
        error_stage="route",
        error_class="RouteError",
        error_detail=DETAIL,
    )
    if with_keys:
        found = [
            keys._key(keys.FAMILY, "Quixotevarga"),
            keys._key(keys.IDENTIFIER, "ABQ-4471", "CITY"),
            keys._key(keys.VISIT, "VQ-88"),
            keys._key(keys.BIRTH_DATE, "19610215"),
            keys._key(keys.SENDING_APPLICATION, "EHR"),
        ]
        MessageKey.objects.bulk_create(MessageKey(message=message, **k._asdict()) for k in found)
    return message


@pytest.fixture
def channel():
    return factories.channel(40702)


def shown_detail(client, message) -> str:
    rows = client.get("/api/v1/messages/").json()["results"]
    return next(r["error_detail"] for r in rows if r["id"] == message.pk)


def test_a_viewer_reads_the_detail_with_the_keys_masked(viewer_user, channel):
    client = signed_in(viewer_user)
    with_keys, without = errored(channel, True), errored(channel, False)

    masked = shown_detail(client, with_keys)
    assert "Quixotevarga" not in masked and "ABQ-4471" not in masked and "VQ-88" not in masked
    assert "19610215" not in masked and "matched no rule" in masked
    assert "Quixotevarga" in shown_detail(client, without)  # nothing else told it was a name

    page = client.get(f"/messages/{with_keys.pk}/").content.decode()
    assert "matched no rule" in page and "Quixotevarga" not in page and "ABQ-4471" not in page


def test_keys_are_read_for_the_whole_list_at_once(viewer_user, channel):
    client = signed_in(viewer_user)
    errored(channel, True)

    def counted() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/messages/").status_code == 200
        return len(captured)

    few = counted()
    for _ in range(6):
        errored(channel, True)
    assert counted() == few
