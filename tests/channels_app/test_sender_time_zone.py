"""A channel's sender time zone (source option ``timezone``, an IANA name): times the sender
writes without an offset, in a message whose MSH-7 has none either, are read in that zone with
its daylight saving, through the pipeline and the test bench alike; without it they are UTC."""

from __future__ import annotations

import pytest

from adapters.codecs import hl7v2
from adapters.mapping import convert
from channels_app.dry_run import dry_run
from channels_app.models import Delivery
from channels_app.sources import ConfigError, checked_source_config
from tests.support import send, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def admission(msh7: str, admitted: str, control: str = "TZ-1") -> bytes:
    return (
        f"MSH|^~\\&|REG|HOSP|HUB|HUB|{msh7}||ADT^A01^ADT_A01|{control}|P|2.5.1\r"
        "PID|1||MRN-TZ^^^HOSP^MR||DOE^JANE||19800101|F\r"
        f"PV1|1|I|W1^101^A||||||||||||||||V-TZ|||||||||||||||||||||||||{admitted}\r"
    ).encode()


def encounter_start(bundle: dict) -> str:
    [encounter] = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
    ]
    return encounter["period"]["start"]


@pytest.mark.parametrize(
    ("msh7", "admitted", "start"),
    [
        ("202607150830", "20260715080000", "2026-07-15T08:00:00-04:00"),  # daylight saving
        ("202601150830", "20260115080000", "2026-01-15T08:00:00-05:00"),
        ("202607150830-0700", "20260715080000", "2026-07-15T08:00:00-07:00"),  # MSH-7 says
    ],
)
def test_times_without_an_offset_are_read_in_the_channels_zone(msh7, admitted, start):
    message = hl7v2.parse(admission(msh7, admitted))
    result = convert(message, timezone="America/New_York")
    assert encounter_start(result.bundle) == start
    if "-0700" not in msh7:
        [note] = [i for i in result.issues if i.target == "dateTime/instant"]
        assert "the channel's time zone (America/New_York)" in note.reason
    assert encounter_start(convert(message).bundle) == start[:19] + (
        "-07:00" if "-0700" in msh7 else "+00:00"
    )


def test_an_unknown_zone_is_refused_naming_the_setting():
    config = {"port": 40990, "timezone": "America/Gotham"}
    with pytest.raises(ConfigError, match="timezone.*not a time zone name"):
        checked_source_config("mllp", config)


def test_the_bench_and_the_pipeline_read_the_channels_zone(hub, mllp_port, fhir_sink):
    hub.source_config = {**hub.source_config, "timezone": "Europe/Paris"}
    hub.save(update_fields=["source_config"])
    raw = admission("202607150830", "20260715080000", "TZ-PIPE")
    assert encounter_start(dry_run(hub, raw).bundle) == "2026-07-15T08:00:00+02:00"
    send(mllp_port, raw)
    wait_for(
        lambda: Delivery.objects.filter(
            message__control_id="TZ-PIPE", status=Delivery.Status.DELIVERED
        ).first(),
        what="ADT delivered",
    )
    [bundle] = fhir_sink.bundles()
    assert encounter_start(bundle) == "2026-07-15T08:00:00+02:00"
