"""Small builders for config rows and HL7 messages used across tests."""

from __future__ import annotations

import itertools

from channels_app.models import Channel, Destination
from console.roles import Role, set_role

_seq = itertools.count(1)


def channel(port: int, **kwargs) -> Channel:
    n = next(_seq)
    defaults = {"name": f"test channel {n}", "source_config": {"host": "127.0.0.1", "port": port}}
    c = Channel.objects.create(**{**defaults, **kwargs})
    return c


def user(username: str | None = None, role: Role | None = None, password: str = "x" * 16):
    """A console user with ``role`` (None: signed in, but in no role group)."""
    from django.contrib.auth import get_user_model

    u = get_user_model().objects.create_user(username or f"user{next(_seq)}", password=password)
    if role is not None:
        set_role(u, role)
    return u


def fhir_destination(channel: Channel, url: str, **kwargs) -> Destination:
    defaults = {
        "name": "FHIR sink",
        "transport": Destination.Transport.FHIR_REST,
        "config": {"base_url": url},
        "timeout_s": 5,
        "max_attempts": 8,
        "backoff_base_s": 0.2,
        "backoff_max_s": 1.0,
    }
    return Destination.objects.create(channel=channel, **{**defaults, **kwargs})


def adt_a01(
    control_id: str = "CTRL0001", family: str = "DOE", mrn: str = "MRN123", sender: str = "EPIC"
) -> bytes:
    return (
        f"MSH|^~\\&|{sender}|HOSP|HUB|HUB|20240102030405-0500||ADT^A01^ADT_A01|{control_id}|P|2.5.1\r"
        f"EVN|A01|20240102030405-0500\r"
        f"PID|1||{mrn}^^^HOSP^MR||{family}^JANE^Q||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701^USA||555-1234\r"
        f"PV1|1|I|WARD1^101^A^HOSP||||1234^WELBY^MARCUS^^^DR|||MED||||||||V{control_id}|||||||||||||||||||||||||20240102030000-0500\r"
    ).encode()


def oru_r01(
    control_id: str = "LAB0001", n_obx: int = 3, mrn: str = "MRN123", status: str = "F"
) -> bytes:
    """``status``: the result status (OBR-25, OBX-11): F final, P preliminary."""
    obx = "".join(
        f"OBX|{i}|NM|2345-7^GLUCOSE^LN||{90 + i}|mg/dL^mg/dL^UCUM|70-105|N|||{status}|||20240102040000-0500\r"
        for i in range(1, n_obx + 1)
    )
    return (
        f"MSH|^~\\&|LAB|HOSP|HUB|HUB|20240102050000-0500||ORU^R01^ORU_R01|{control_id}|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19800101|F\r"
        f"OBR|1|ORD1^EHR|FIL1^LAB|24331-1^LIPID PANEL^LN|||20240102040000-0500|||||||||||||||20240102050000-0500|||{status}\r"
        f"{obx}"
    ).encode()
