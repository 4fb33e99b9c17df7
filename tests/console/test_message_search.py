"""Finding messages by the keys people know (MRN, name, order, accession, visit, control id),
through one filter that the Messages page, the API and bulk replay share; a filter value the hub
does not know is refused by name, never ignored."""

from __future__ import annotations

import json

import pytest

from adapters.codecs import hl7v2
from channels_app.models import Delivery, Message, MessageKey, ReplayJob
from channels_app.pipeline.process import process_messages
from tests import factories
from tests.support import signed_in

pytestmark = pytest.mark.django_db

LAB = (
    "MSH|^~\\&|LIS|LABHOSP|HUB|HUB|20240102050000||ORU^R01^ORU_R01|LAB-77|P|2.5.1\r"
    "PID|1||MRN-222^^^LABHOSP^MR~NHS-999^^^NHS^NH||Łukasiewicz^Zoë||19751231|F\r"
    "PV1|1|O|||||||||||||||||VISIT-5\r"
    "ORC|RE|ORD-1^EHR|FIL-1^LAB\r"
    "OBR|1|ORD-1^EHR|FIL-1^LAB|24331-1^LIPID PANEL^LN|||20240102040000|||||||||||ACC-9\r"
    "OBX|1|NM|2345-7^GLUCOSE^LN||91|mg/dL|70-105|N|||F\r"
)


def stored(channel, raw: bytes) -> Message:
    """Received as ingest stores it (its header read), then processed by the pipeline."""
    header = hl7v2.parse(raw)
    message = Message.objects.create(
        channel=channel,
        raw=raw,
        size=len(raw),
        message_type=header.message_type,
        control_id=header.control_id,
        sending_application=header.sending_application,
    )
    process_messages([message.pk])
    message.refresh_from_db()
    return message


@pytest.fixture
def traffic():
    channel = factories.channel(40901, name="Admissions")
    return {
        "muller": stored(channel, factories.adt_a01("CTRL-A1", family="MÜLLER", mrn="MRN-111")),
        "lab": stored(channel, LAB.encode()),
        "smith": stored(
            channel, factories.adt_a01("CTRL-B2", family="SMITH", mrn="MRN-333", sender="CERNER")
        ),
    }


def test_keys_are_extracted_once_at_processing(traffic):
    keys = set(MessageKey.objects.filter(message=traffic["lab"]).values_list("kind", "value"))
    assert {
        ("identifier", "MRN-222"),
        ("identifier", "NHS-999"),
        ("family", "Łukasiewicz"),
        ("given", "Zoë"),
        ("birth_date", "19751231"),
        ("control_id", "LAB-77"),
        ("placer_order", "ORD-1"),
        ("filler_order", "FIL-1"),
        ("accession", "ACC-9"),
        ("visit", "VISIT-5"),
        ("sending_application", "LIS"),
        ("sending_facility", "LABHOSP"),
    } <= keys
    nhs = MessageKey.objects.get(message=traffic["lab"], value="NHS-999")
    assert nhs.authority == "NHS"
    family = MessageKey.objects.get(message=traffic["lab"], kind="family")
    assert family.normalised == "łukasiewicz"  # Ł has no decomposition: lower case only
    assert MessageKey.objects.get(message=traffic["muller"], kind="family").normalised == "muller"


SEARCHES = [
    ("MRN-111", ["muller"]),  # an identifier, exactly
    ("nhs-999", ["lab"]),  # any case
    ("mül", ["muller"]),  # a name's beginning
    ("MULLER", ["muller"]),  # accents do not count
    ("smith jane", ["smith"]),  # family and given
    ("zoe", ["lab"]),
    ("19751231", ["lab"]),  # birth date
    ("ORD-1", ["lab"]),  # placer order number
    ("FIL-1", ["lab"]),  # filler order number
    ("ACC-9", ["lab"]),  # accession
    ("VISIT-5", ["lab"]),  # visit number
    ("CTRL-A1", ["muller"]),  # control id, exactly
    ("ctrl-", ["smith", "muller"]),  # control id, by its beginning
    ("CERNER", ["smith"]),  # sending application
    ("MRN-11", []),  # an identifier is never matched by a part of it
    ("nobody", []),
]


@pytest.mark.parametrize(("q", "expected"), SEARCHES)
def test_search_by_each_key_kind_in_the_api(viewer_user, traffic, q, expected):
    response = signed_in(viewer_user).get("/api/v1/messages/", {"q": q})
    assert response.status_code == 200
    found = [m["id"] for m in response.json()["results"]]
    assert found == [traffic[name].pk for name in expected]


@pytest.mark.parametrize(("q", "expected"), SEARCHES)
def test_search_by_each_key_kind_on_the_page(viewer_user, traffic, q, expected):
    response = signed_in(viewer_user).get("/messages/", {"q": q})
    assert response.status_code == 200
    assert listed(response) == [traffic[name].pk for name in expected]
    if not expected:
        assert "No messages match this search." in response.content.decode()


def listed(response) -> list[int]:
    return [m.pk for m in response.context["rows"]]


@pytest.fixture
def deliveries(traffic):
    """Muller's and Smith's delivery failed; the lab result was delivered."""
    channel = traffic["lab"].channel
    ehr = factories.fhir_destination(channel, "http://127.0.0.1:9/fhir", name="EHR")
    for name, state in (("muller", "FAILED"), ("lab", "DELIVERED"), ("smith", "FAILED")):
        Delivery.objects.create(message=traffic[name], destination=ehr, status=state)
    Message.objects.update(status=Message.Status.PROCESSED)
    return ehr


def test_page_api_and_bulk_replay_select_the_same_messages(operator_user, traffic, deliveries):
    client = signed_in(operator_user)
    query = {"q": "jane", "delivery": "failed", "destination": str(deliveries.pk)}
    expected = [traffic["smith"].pk, traffic["muller"].pk]

    page = client.get("/messages/", query)
    api = client.get("/api/v1/messages/", query).json()
    assert listed(page) == [m["id"] for m in api["results"]] == expected

    url = "/api/v1/messages/replay/?" + "&".join(f"{k}={v}" for k, v in query.items())
    by_api = client.post(url, json.dumps({"mode": "redeliver"}), content_type="application/json")
    assert by_api.status_code == 200
    assert sorted(ReplayJob.objects.get(pk=by_api.json()["id"]).message_ids) == sorted(expected)

    Delivery.objects.filter(message_id__in=expected).update(status=Delivery.Status.FAILED)
    by_page = client.post("/messages/replay/", {**query, "mode": "redeliver"})
    job = ReplayJob.objects.exclude(pk=by_api.json()["id"]).get()
    assert by_page.status_code == 302 and sorted(job.message_ids) == sorted(expected)
    assert job.selection == {"filter": query}


def test_status_is_the_outcome_of_the_deliveries(viewer_user, traffic, deliveries):
    client = signed_in(viewer_user)
    rows = {m["id"]: m for m in client.get("/api/v1/messages/").json()["results"]}
    assert rows[traffic["muller"].pk]["outcome"] == "FAILED"
    assert rows[traffic["lab"].pk]["outcome_label"] == "Delivered"
    assert rows[traffic["muller"].pk]["destinations"] == [
        {
            "destination": deliveries.pk,
            "destination_name": "EHR",
            "status": "FAILED",
            "label": "Failed",
            "attempts": 0,
        }
    ]
    failed = client.get("/api/v1/messages/", {"status": "FAILED"}).json()["results"]
    assert sorted(m["id"] for m in failed) == sorted([traffic["muller"].pk, traffic["smith"].pk])
    page = client.get("/messages/", {"status": "DELIVERED"})
    assert listed(page) == [traffic["lab"].pk]
    assert "Routed" not in page.content.decode().split('id="messages-table"')[1]


def test_other_filters(viewer_user, traffic, deliveries):
    client = signed_in(viewer_user)

    def ids(**query):
        return [m["id"] for m in client.get("/api/v1/messages/", query).json()["results"]]

    assert ids(type="oru") == [traffic["lab"].pk]
    assert ids(trigger="A01") == [traffic["smith"].pk, traffic["muller"].pk]
    assert ids(channel=traffic["lab"].channel_id, delivery="DELIVERED") == [traffic["lab"].pk]
    assert ids(received_after="2000-01-01", received_before="2001-01-01") == []
    Message.objects.filter(pk=traffic["lab"].pk).update(status="ERROR", error_stage="map")
    assert ids(error_stage="map") == [traffic["lab"].pk]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("status", "BOGUS"),
        ("channel", "999999"),
        ("error_stage", "nowhere"),
        ("delivery", "lost"),
        ("received_after", "yesterday"),
    ],
)
def test_an_unknown_filter_value_is_refused_by_name(operator_user, traffic, name, value):
    client = signed_in(operator_user)
    api = client.get("/api/v1/messages/", {name: value})
    assert api.status_code == 400 and value in api.json()[name][0]

    page = client.get("/messages/", {name: value})
    html = page.content.decode()
    assert page.status_code == 400 and f"<code>{name}</code>" in html and value in html
    assert page.context["rows"] == []

    bulk = client.post(
        f"/api/v1/messages/replay/?{name}={value}",
        json.dumps({"mode": "redeliver"}),
        content_type="application/json",
    )
    assert bulk.status_code == 400 and name in bulk.json()
    refused = client.post("/messages/replay/", {name: value, "mode": "redeliver"})
    assert refused.status_code == 400 and name in refused.content.decode()
    assert not ReplayJob.objects.exists()


def test_the_page_goes_back_by_keyset(viewer_user, traffic, monkeypatch):
    from console.views import messages

    monkeypatch.setattr(messages, "PAGE_SIZE", 2)
    client = signed_in(viewer_user)
    first = client.get("/messages/")
    assert listed(first) == [traffic["smith"].pk, traffic["lab"].pk]
    older = client.get("/messages/", {"before": first.context["older"]})
    assert listed(older) == [traffic["muller"].pk] and older.context["older"] is None
    newer = client.get("/messages/", {"after": older.context["newer"]})
    assert listed(newer) == [traffic["smith"].pk, traffic["lab"].pk]


def test_reprocessing_replaces_the_keys(traffic):
    message = traffic["smith"]
    before = MessageKey.objects.filter(message=message).count()
    Message.objects.filter(pk=message.pk).update(status=Message.Status.RECEIVED)
    process_messages([message.pk])
    assert MessageKey.objects.filter(message=message).count() == before


def test_the_api_counts_messages_up_to_a_cap(viewer_user, traffic, monkeypatch):
    from console.api import pagination

    client = signed_in(viewer_user)
    found = client.get("/api/v1/messages/", {"q": "jane"}).json()
    assert (found["count"], found["count_capped"]) == (2, False)
    monkeypatch.setattr(pagination, "COUNT_CAP", 1)
    capped = client.get("/api/v1/messages/", {"q": "jane"}).json()
    assert (capped["count"], capped["count_capped"], len(capped["results"])) == (1, True, 2)


def test_a_search_reads_the_key_index_once_for_count_and_page(viewer_user, traffic):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = signed_in(viewer_user)
    with CaptureQueriesContext(connection) as captured:
        found = client.get("/api/v1/messages/", {"q": "jane", "limit": 1}).json()
    assert found["count"] == 2 and len(found["results"]) == 1 and found["next"]
    searches = [q["sql"] for q in captured.captured_queries if "messagekey" in q["sql"]]
    assert len(searches) == 1 and "= ANY(ARRAY(" in searches[0]
    second = client.get("/api/v1/messages/", {"q": "jane", "limit": 1, "offset": 1}).json()
    assert [found["results"][0]["id"], second["results"][0]["id"]] == [
        traffic["smith"].pk,
        traffic["muller"].pk,
    ]
