"""The MLLP sender against a real receiver: what each answer (or its absence) means."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.registry import build_transport, transport_class
from adapters.transports.base import Payload, TransportError
from adapters.transports.mllp import frame
from tests.adapters.transports.mllp_peer import MllpPeer, ack, answering, control_id, message
from tests.support import free_port


def payload(control: str = "MSG1", source: bytes | None = None) -> Payload:
    return Payload(
        b"{}", "application/fhir+json", f"key-{control}", "m", source or message(control), 1
    )


@pytest.fixture
def peer():
    peers = []

    def start(answer, tls=None) -> MllpPeer:
        p = MllpPeer(answer, tls).start()
        peers.append(p)
        return p

    yield start
    for p in peers:
        p.stop()


def sender(port: int, **config):
    return build_transport("mllp", {"host": "127.0.0.1", "port": port, **config})


def test_forwards_the_source_bytes_and_aa_is_delivered(peer):
    p = peer(answering("AA"))
    result = sender(p.port).send(payload("MSG1"), timeout=5)
    assert p.received == [message("MSG1")]
    assert result.summary == "AA peer says AA" and "MSH-10 MSG1" in result.request
    assert transport_class("mllp").needs_source is True


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("CA", "delivered"),
        ("AE", "transient"),
        ("CE", "transient"),
        ("AR", "permanent"),
        ("CR", "permanent"),
    ],
)
def test_each_acknowledgement_code(peer, code, outcome):
    p = peer(answering(code))
    t = sender(p.port)
    if outcome == "delivered":
        assert t.send(payload(), timeout=5).summary.startswith(code)
        return
    with pytest.raises(TransportError) as caught:
        t.send(payload(), timeout=5)
    assert caught.value.permanent is (outcome == "permanent")
    assert f"peer says {code}" in str(caught.value)
    assert caught.value.issues[0]["code"] == code
    p.answer = answering("AA")
    t.send(payload("MSG2"), timeout=5)  # a negative ACK leaves the connection usable
    assert p.connections == 1


def test_err_segments_become_issues(peer):
    err = "ERR||PID^1^3|103^Table value not found^HL70357|E||||Unknown assigning authority"
    p = peer(lambda m: [(0, frame(ack("AE", control_id(m), "bad", err)))])
    with pytest.raises(TransportError) as caught:
        sender(p.port).send(payload(), timeout=5)
    assert caught.value.issues == (
        {
            "severity": "error",
            "code": "103",
            "diagnostics": "Unknown assigning authority",
            "expression": ["PID-1-3"],
        },
    )


def test_no_ack_is_transient_drops_the_connection_and_the_retry_sends_the_same_bytes(peer):
    p = peer(lambda m: None)
    t = sender(p.port)
    for _ in range(2):
        with pytest.raises(TransportError) as caught:
            t.send(payload("MSG1"), timeout=0.3)
        assert not caught.value.permanent
        assert "no ACK" in str(caught.value) and "same control id" in str(caught.value)
    assert p.received == [message("MSG1")] * 2  # byte for byte: the receiver can dedupe
    assert p.connections == 2  # the first was dropped at its timeout


def test_a_late_ack_is_never_read_as_the_answer_to_the_next_message(peer):
    def late_for_the_first(m):
        delay = 0.6 if control_id(m) == "FIRST" else 0.0
        return [(delay, frame(ack("AA", control_id(m))))]

    p = peer(late_for_the_first)
    t = sender(p.port, connections=1)
    with pytest.raises(TransportError, match="no ACK"):
        t.send(payload("FIRST"), timeout=0.2)
    assert t.send(payload("SECOND"), timeout=5).summary == "AA"
    assert p.connections == 2


def test_an_ack_for_another_control_id_is_transient_and_drops_the_connection(peer):
    p = peer(lambda m: [(0, frame(ack("AA", "SOMETHING-ELSE")))])
    t = sender(p.port)
    with pytest.raises(TransportError) as caught:
        t.send(payload("MSG1"), timeout=5)
    assert not caught.value.permanent and "'SOMETHING-ELSE'" in str(caught.value)
    p.answer = answering("AA")
    t.send(payload("MSG2"), timeout=5)
    assert p.connections == 2


def test_frames_beyond_the_ack_retire_the_connection(peer):
    def twice(m):
        return [(0, frame(ack("AA", control_id(m))) + frame(ack("AA", "EXTRA")))]

    p = peer(twice)
    t = sender(p.port)
    assert t.send(payload("M1"), timeout=5).summary == "AA"
    p.answer = answering("AA")
    t.send(payload("M2"), timeout=5)
    assert p.connections == 2


def test_release_2_commit_acknowledgement_before_the_ack_is_understood(peer):
    p = peer(lambda m: [(0, frame(b"\x06")), (0.01, frame(ack("AA", control_id(m))))])
    assert sender(p.port).send(payload(), timeout=5).summary == "AA"


def test_an_answer_without_msa_is_transient(peer):
    p = peer(lambda m: [(0, frame(b"MSH|^~\\&|X\rZZZ|1\r"))])
    with pytest.raises(TransportError, match="no MSA") as caught:
        sender(p.port).send(payload(), timeout=5)
    assert not caught.value.permanent


def test_one_connection_carries_many_messages(peer):
    p = peer(answering("AA"))
    t = sender(p.port)
    for n in range(10):
        t.send(payload(f"M{n}"), timeout=5)
    assert p.connections == 1 and len(p.received) == 10


def test_a_connection_the_receiver_closed_is_replaced_without_an_error(peer):
    p = peer(answering("AA"))
    t = sender(p.port)
    t.send(payload("M1"), timeout=5)
    p.drop_all()
    assert t.send(payload("M2"), timeout=5).summary.startswith("AA")
    assert p.connections == 2


def test_concurrent_sends_share_a_small_pool_and_each_gets_its_own_ack(peer):
    p = peer(lambda m: [(0.005, frame(ack("AA", control_id(m))))])
    t = sender(p.port, connections=3)
    errors: list[Exception] = []

    def work(worker: int) -> None:
        for n in range(10):
            try:
                t.send(payload(f"W{worker}-{n}"), timeout=10)
            except Exception as exc:  # collected: an assert in a thread would be lost
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(p.received) == 160 and p.connections <= 3


def test_refused_connection_is_transient():
    with pytest.raises(TransportError, match="cannot reach") as caught:
        sender(free_port()).send(payload(), timeout=2)
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("source", "why"),
    [(None, "no HL7 v2 message"), (b"PID|1\r", "MSH"), (b"MSH|^~\\&|A|B\r", "MSH-10")],
)
def test_nothing_to_forward_is_permanent(peer, source, why):
    p = peer(answering("AA"))
    bare = Payload(b"{}", "application/fhir+json", "k", "m", source, 1)
    with pytest.raises(TransportError, match=why) as caught:
        sender(p.port).send(bare, timeout=2)
    assert caught.value.permanent and p.received == []


# ------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (its own CA), with an encrypted key."""
    where = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mllp-peer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (where / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (where / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-pass-9"),
        )
    )
    return where


def server_context(certificates) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        certificates / "cert.pem", certificates / "key.pem", password="key-pass-9"
    )
    return context


def test_tls_with_the_receivers_ca_reuses_its_connection(peer, certificates):
    p = peer(answering("AA"), tls=server_context(certificates))
    t = sender(p.port, tls={"ca_file": str(certificates / "cert.pem")})
    for n in range(3):
        assert t.send(payload(f"T{n}"), timeout=5).summary.startswith("AA")
    assert p.connections == 1 and len(p.received) == 3


def test_tls_to_an_untrusted_receiver_is_transient_and_keeps_secrets(peer, certificates):
    p = peer(answering("AA"), tls=server_context(certificates))
    t = sender(
        p.port,
        tls={
            "cert_file": str(certificates / "cert.pem"),
            "key_file": str(certificates / "key.pem"),
            "key_password": "key-pass-9",
        },
    )  # no ca_file: the system store does not know this self-signed certificate
    assert "key-pass-9" not in repr(t.config) and "key-pass-9" not in str(t.config)
    with pytest.raises(TransportError, match="TLS with") as caught:
        t.send(payload(), timeout=5)
    assert not caught.value.permanent and "key-pass-9" not in str(caught.value)
    assert p.received == []


PATIENT_BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:5b0c1c4e-0d6a-4a52-9d7e-0c3b8b1f0a11",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-7781"}],
                "name": [{"family": "O'Hara|Smith", "given": ["Ann"]}],
                "gender": "female",
                "birthDate": "1971-04-09",
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    ],
}


def rebuilt_payload(bundle: dict, source: bytes | None = None) -> Payload:
    import json

    return Payload(json.dumps(bundle).encode(), "application/fhir+json", "k", "m", source, 42)


def test_rebuilt_sends_v2_built_from_the_bundle_for_a_fhir_sender(peer):
    p = peer(answering("AA"))
    t = sender(p.port, payload="rebuilt", message_type="ADT^A08", receiving_application="EHR")
    fhir_source = b'{"resourceType": "Patient"}'  # not v2: the control id is the hub's own
    result = t.send(rebuilt_payload(PATIENT_BUNDLE, fhir_source), timeout=5)
    [sent] = p.received
    segments = sent.decode().split("\r")
    msh = segments[0].split("|")
    assert msh[4] == "EHR" and msh[8].startswith("ADT^A08") and msh[9] == "HUB42"
    pid = next(s for s in segments if s.startswith("PID|")).split("|")
    assert "MRN-7781" in pid[3] and pid[5].startswith("O'Hara\\F\\Smith^Ann")
    assert result.summary.startswith("AA") and "MSH-10 HUB42" in result.request


def test_rebuilt_keeps_the_v2_sources_control_id(peer):
    p = peer(answering("AA"))
    t = sender(p.port, payload="rebuilt", message_type="ADT^A08")
    t.send(rebuilt_payload(PATIENT_BUNDLE, message("SRC-9")), timeout=5)
    assert p.received[0].decode().split("\r")[0].split("|")[9] == "SRC-9"


def test_a_bundle_that_cannot_become_the_message_fails_for_good(peer):
    p = peer(answering("AA"))
    t = sender(p.port, payload="rebuilt", message_type="ORU^R01")
    with pytest.raises(TransportError) as caught:
        t.send(rebuilt_payload({"resourceType": "Bundle", "type": "transaction"}), timeout=5)
    assert caught.value.permanent and "cannot build the v2 message" in str(caught.value)
    assert p.received == []


def test_rebuilt_needs_a_message_type():
    from adapters.registry import ConfigError

    with pytest.raises(ConfigError, match="message_type is required"):
        sender(1, payload="rebuilt")
