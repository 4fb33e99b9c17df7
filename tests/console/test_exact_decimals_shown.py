"""What a user sees of a stored message keeps each decimal as written: an OBX-5 of ``1.50`` is
``1.50`` on the message page and in the API's body and reveal answers, whether the canonical
is sealed at rest or kept in the clear (a float would show ``1.5``)."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet

from channels_app.models import Message
from channels_app.pipeline.process import process_messages
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db

ORU = (
    b"MSH|^~\\&|LAB|HOSP|HUB|HUB|20240102050000-0500||ORU^R01^ORU_R01|DEC-SHOWN|P|2.5.1\r"
    b"PID|1||MRN-DEC^^^HOSP^MR||DOE^JANE||19800101|F\r"
    b"OBR|1|ORD1^EHR|FIL1^LAB|24331-1^LIPID PANEL^LN|||20240102040000-0500"
    b"|||||||||||||||20240102050000-0500|||F\r"
    b"OBX|1|NM|2160-0^Creatinine^LN||1.50|mg/dL^mg/dL^UCUM|0.60-1.20|H|||F\r"
    b"OBX|2|NM|1988-5^CRP^LN||0.0100|mg/L^mg/L^UCUM||N|||F\r"
)
WRITTEN = {"1.50", "0.0100", "0.60", "1.20"}
SHORTENED = {"1.5", "0.01", "0.6", "1.2"}


@pytest.fixture(params=["sealed", "in clear"])
def stored(request, settings):
    settings.HUB_ENCRYPTION_KEYS = (
        [Fernet.generate_key().decode()] if request.param == "sealed" else []
    )
    channel = factories.channel(40071)
    message = Message.objects.create(
        channel=channel, raw=ORU, size=len(ORU), control_id="DEC-SHOWN"
    )
    process_messages([message.pk])
    message.refresh_from_db()
    assert message.status != Message.Status.ERROR, message.error_detail
    assert (message.canonical_sealed is not None) == (request.param == "sealed")
    return message


@pytest.fixture
def operator(client):
    client.force_login(factories.user("op", Role.OPERATOR))
    return client


def numbers(text: str) -> set[str]:
    return set(re.findall(r'"value": ?([-0-9.]+)', text))


def assert_written(text: str) -> None:
    found = numbers(text)
    assert found >= WRITTEN, found
    assert not SHORTENED & found, found


def test_the_message_page_shows_decimals_as_written(operator, stored):
    html = operator.get(f"/messages/{stored.pk}/").content.decode()
    assert_written(html.replace("&quot;", '"'))


def test_the_revealed_page_shows_decimals_as_written(operator, stored):
    html = operator.post(f"/messages/{stored.pk}/reveal/").content.decode()
    assert_written(html.replace("&quot;", '"'))


def test_the_api_body_and_reveal_keep_decimals_as_written(operator, stored):
    masked = operator.get(f"/api/v1/messages/{stored.pk}/body/")
    revealed = operator.post(f"/api/v1/messages/{stored.pk}/reveal/")
    assert masked.status_code == revealed.status_code == 200
    for answer in (masked, revealed):
        assert_written(answer.content.decode())


def test_the_api_test_bench_keeps_decimals_as_written(analyst_user, client):
    channel = factories.channel(40072)
    client.force_login(analyst_user)
    answer = client.post(
        f"/api/v1/channels/{channel.pk}/test/",
        {"raw": ORU.decode()},
        content_type="application/json",
    )
    assert answer.status_code == 200
    assert_written(answer.content.decode())
