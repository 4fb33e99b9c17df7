"""A sweep for PHI in everything a viewer can read (issue 15: target 0).

Every corpus message with a PID segment (HL7_CORPUS, batches and malformed files aside) gets
distinctive PHI (record number, name, birth date, street, city, phone) and goes through the hub:
MLLP listener, a real worker, a FHIR sink that refuses every second delivery naming the patient.
The corpus's FHIR Bundles (``*.expected.json``) get the same treatment over HTTP inbound. Then a
viewer reads every viewer-visible API endpoint and page about them, and every occurrence of any of
those values is counted."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from channels_app.models import Attempt, Channel, Delivery, Message
from tests import factories
from tests.support import (
    PatientNamingSink,
    inbound_client,
    post_inbound,
    send,
    signed_in,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

OPEN = [Delivery.Status.PENDING, Delivery.Status.SENDING, Delivery.Status.RETRY]


@dataclass(frozen=True)
class Patient:
    n: int

    @property
    def mrn(self) -> str:
        return f"ZQMRN{self.n:02d}77"

    @property
    def family(self) -> str:
        return f"ZQXFAM{self.n:02d}"

    @property
    def given(self) -> str:
        return f"QZXGIV{self.n:02d}"

    @property
    def born(self) -> tuple[str, str, str]:
        return str(1950 + self.n), f"{self.n % 12 + 1:02d}", f"{10 + self.n % 18}"

    @property
    def street(self) -> str:
        return f"ZQXSTREET{self.n:02d}"

    @property
    def city(self) -> str:
        return f"ZQCITY{self.n:02d}"

    @property
    def phone(self) -> str:
        return f"610-{4000 + self.n}"

    def values(self) -> list[str]:
        year, month, day = self.born
        dates = [f"{year}{month}{day}", f"{year}-{month}-{day}"]
        return [self.mrn, self.family, self.given, *dates, self.street, self.city, self.phone]


def with_phi(raw: bytes, patient: Patient) -> bytes:
    """The message with ``patient``'s values in every PID and its own control id."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\r").replace("\n", "\r")
    field, component = text[3], text[4]
    segments = []
    for segment in text.split("\r"):
        fields = segment.split(field)
        if fields[0] == "MSH":
            fields += [""] * (12 - len(fields))
            fields[9] = f"SWEEP-{patient.n}"
        elif fields[0] == "PID":
            c = component
            fields += [""] * (14 - len(fields))
            fields[3] = f"{patient.mrn}{c}{c}{c}HOSP{c}MR"
            fields[5] = f"{patient.family}{c}{patient.given}"
            fields[7] = "".join(patient.born)
            fields[11] = f"{patient.n} {patient.street} RD{c}{c}{patient.city}"
            fields[13] = f"(555){patient.phone}"
        segments.append(field.join(fields))
    return "\r".join(segments).encode()


def with_phi_fhir(raw: bytes, patient: Patient) -> bytes:
    """The Bundle with ``patient``'s values in every Patient resource."""
    bundle = json.loads(raw)
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            resource.update(
                identifier=[{"system": "urn:mrn", "value": patient.mrn}],
                name=[{"family": patient.family, "given": [patient.given]}],
                birthDate="-".join(patient.born),
                address=[{"line": [f"{patient.n} {patient.street} RD"], "city": patient.city}],
                telecom=[{"system": "phone", "value": f"(555){patient.phone}"}],
            )
    return json.dumps(bundle).encode()


def corpus_root() -> Path:
    return Path(os.environ.get("HL7_CORPUS", "/work/shared/corpus"))


def corpus_bundles() -> list[bytes]:
    files = sorted(corpus_root().glob("*/*.expected.json"))
    return [p.read_bytes() for p in files if p.parent.name != "malformed"]


def corpus_messages() -> list[bytes]:
    root = corpus_root()
    files = sorted(p for p in root.glob("*/*.hl7") if p.parent.name not in ("batch", "malformed"))
    raws = [p.read_bytes() for p in files]
    return [raw for raw in raws if re.search(rb"[\r\n]PID.", raw)]


@pytest.fixture
def swept(mllp_port, listener, celery_worker):
    """The corpus run through the hub; every message settled, every delivery done."""
    sink = PatientNamingSink(refuse_every=2).start()
    channel = factories.channel(mllp_port)
    factories.fhir_destination(channel, sink.url)
    listener(channel)
    patients = []
    try:
        for n, raw in enumerate(corpus_messages()):
            patient = Patient(n)
            send(mllp_port, with_phi(raw, patient))
            patients.append(patient)
        wait_for(lambda: settled(len(patients)), timeout=180, what="every message settled")
        yield patients
    finally:
        sink.stop()


@pytest.fixture
def swept_fhir(live_server, celery_worker):
    """The corpus's FHIR Bundles posted over HTTP inbound; every message settled."""
    sink = PatientNamingSink(refuse_every=2).start()
    channel = factories.channel(0, source_type=Channel.SourceType.HTTP, source_config={})
    factories.fhir_destination(channel, sink.url)
    patients = []
    try:
        with inbound_client(live_server.url, "sweep") as client:
            for n, raw in enumerate(corpus_bundles(), start=50):
                patient = Patient(n)
                body = with_phi_fhir(raw, patient)
                key = {"Idempotency-Key": f"SWEEP-{n}"}
                response = post_inbound(client, channel, body, "application/fhir+json", **key)
                assert response.status_code in (202, 422), response.text  # 422: stored, invalid
                patients.append(patient)
        wait_for(lambda: settled(len(patients)), timeout=180, what="every message settled")
        yield patients
    finally:
        sink.stop()


def settled(expected: int) -> bool:
    messages = Message.objects.filter(control_id__startswith="SWEEP-")
    return (
        messages.count() == expected
        and not messages.filter(status=Message.Status.RECEIVED).exists()
        and not Delivery.objects.filter(status__in=OPEN).exists()
    )


def viewer_reads(client) -> dict[str, str]:
    """Every viewer-visible endpoint and page about the swept messages, by URL."""
    urls = ["/api/v1/channels/", "/api/v1/destinations/", "/channels/"]
    urls += pages(client, "/api/v1/messages/") + pages(client, "/api/v1/deliveries/")
    urls += ["/messages/", "/messages/?page=2", "/messages/?status=ERROR"]
    for message in Message.objects.only("id"):
        urls += [
            f"/api/v1/messages/{message.pk}/",
            f"/api/v1/messages/{message.pk}/body/",
            f"/api/v1/deliveries/?message={message.pk}",
            f"/messages/{message.pk}/",
        ]
    for delivery in Delivery.objects.only("id"):
        urls += [
            f"/api/v1/deliveries/{delivery.pk}/",
            f"/api/v1/deliveries/{delivery.pk}/attempts/",
        ]
    read = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        read[url] = response.content.decode()
    return read


def pages(client, url: str) -> list[str]:
    urls = []
    while url:
        urls.append(url)
        url = client.get(url).json()["next"]
        url = url and url.split("testserver", 1)[-1]
    return urls


def found(read: dict[str, str], values: list[str]) -> list[tuple[str, str]]:
    return [
        (value, url)
        for url, text in read.items()
        for value in values
        if value.lower() in text.lower()
    ]


@pytest.mark.parametrize("sweep", ["swept", "swept_fhir"])
def test_a_viewer_finds_none_of_the_swept_phi(request, viewer_user, sweep):
    patients = request.getfixturevalue(sweep)
    values = [v for patient in patients for v in patient.values()]
    refused = Attempt.objects.filter(status_code=400)
    echoed = [a for a in refused if any(p.family in a.error for p in patients)]
    assert len(echoed) >= len(patients) // 3  # the destination did repeat the patients' data
    read = viewer_reads(signed_in(viewer_user))
    leaks = found(read, values)
    print(
        f"\nPHI sweep ({sweep}): {len(patients)} corpus messages, {len(values)} PHI values,"
        f" {Delivery.objects.count()} deliveries ({len(echoed)} refused naming the patient),"
        f" {len(read)} viewer responses read, {len(leaks)} PHI values found"
    )
    assert leaks == []
