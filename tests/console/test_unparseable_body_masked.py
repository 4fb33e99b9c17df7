"""Issue 15, finding 5: a body that does not parse is masked whole, in the API as on the page.

The bodies are posted through HTTP inbound (a live server), stored with their parse error, then
read as a viewer. Cut inside a value, the text after the last complete key was shown by the API."""

from __future__ import annotations

import pytest

from adapters.codecs import custom_json
from channels_app.models import Channel, Message
from console.phi import MASK
from tests import factories
from tests.support import inbound_client, post_inbound, signed_in

pytestmark = pytest.mark.django_db(transaction=True)

FAMILY, MRN = "ZZQXPLOVER", "MRN-83311"
CUT_FHIR = (
    '{"resourceType": "Patient", "identifier": [{"value": "' + MRN + '"}],'
    ' "name": [{"family": "' + FAMILY + ", ALBERTINE born 1961-03-17"
).encode()
CUT_JSON = ('{"orderId": "ORD-9", "patient": {"mrn": "' + MRN + '", "last": "' + FAMILY).encode()
JSON_MAP = {
    "resources": ["Patient"],
    "key": "%input.orderId",
    "rules": [{"source": "%input.patient.last", "target": "Patient.name[0].family"}],
}


@pytest.fixture
def client(live_server):
    with inbound_client(live_server.url, "ehr") as http:
        yield http


def stored(response) -> Message:
    assert response.status_code == 400, response.text
    message = Message.objects.get(pk=response.json()["message_id"])
    assert message.status == Message.Status.ERROR and message.error_stage == "parse"
    return message


@pytest.fixture
def cut_fhir(client) -> Message:
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP)
    return stored(post_inbound(client, channel, CUT_FHIR, "application/fhir+json"))


@pytest.fixture
def cut_custom_json(client) -> Message:
    channel = factories.channel(
        0,
        source_type=Channel.SourceType.HTTP,
        source_config={"inbound": "json", "json_map": JSON_MAP},
    )
    message = stored(post_inbound(client, channel, CUT_JSON, "application/json"))
    assert message.content_type == custom_json.MEDIA_TYPE
    return message


def leaked(text: str) -> list[str]:
    return [v for v in (FAMILY, MRN, "ALBERTINE", "1961-03-17") if v in text]


@pytest.mark.parametrize("body", ["cut_fhir", "cut_custom_json"])
def test_the_api_masks_an_unparseable_body_whole(request, viewer_user, body):
    message = request.getfixturevalue(body)
    response = signed_in(viewer_user).get(f"/api/v1/messages/{message.pk}/body/")
    assert response.status_code == 200
    assert response.json()["raw"] == MASK
    assert leaked(response.content.decode()) == []


@pytest.mark.parametrize("body", ["cut_fhir", "cut_custom_json"])
def test_the_page_masks_it_whole_too(request, viewer_user, body):
    message = request.getfixturevalue(body)
    html = signed_in(viewer_user).get(f"/messages/{message.pk}/").content.decode()
    assert f'id="raw-hl7">{MASK}' in html and "Raw JSON" in html
    assert "Stopped at the parse stage" in html
    assert leaked(html) == []


def test_an_operator_reveal_shows_the_body_as_received(operator_user, cut_fhir):
    client = signed_in(operator_user)
    revealed = client.post(f"/api/v1/messages/{cut_fhir.pk}/reveal/").json()
    assert revealed["raw"] == CUT_FHIR.decode()
    assert client.get(f"/api/v1/messages/{cut_fhir.pk}/body/").json()["raw"] == MASK
