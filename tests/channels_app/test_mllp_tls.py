"""MLLP over TLS, with real certificates made for the test: the handshake, client certificates,
and peers that get it wrong are refused without disturbing the others."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.codecs import hl7v2
from adapters.transports.mllp import MLLPClient, TLSConfig
from channels_app.models import Message
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, key, cert: x509.Certificate) -> tuple[Path, Path]:
    cert_file, key_file = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def make_ca(directory: Path, name: str) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, _ = _write(directory / name, key, cert)
    return Issuer(key, cert, cert_file)


def issue(ca: Issuer, directory: Path, name: str, *, server: bool) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return _write(directory / name, key, builder.sign(ca.key, hashes.SHA256()))


@dataclass
class PKI:
    ca: Issuer
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    other_ca: Issuer
    stranger: tuple[Path, Path]  # a client certificate from a CA the listener does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca, other_ca = make_ca(d, "hub-test-ca"), make_ca(d, "other-ca")
    return PKI(
        ca=ca,
        server=issue(ca, d, "listener", server=True),
        client=issue(ca, d, "lab-system", server=False),
        other_ca=other_ca,
        stranger=issue(other_ca, d, "stranger", server=False),
    )


@pytest.fixture
def listener_log():
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("channels_app.sources.mllp"), Lines(logging.WARNING)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@pytest.fixture
def tls_listener(listener, mllp_port, pki):
    def start(frame_timeout_s: float = 5, **tls) -> int:
        cert_file, key_file = pki.server
        config = {
            "host": "127.0.0.1",
            "port": mllp_port,
            "frame_timeout_s": frame_timeout_s,
            "tls": {"cert_file": str(cert_file), "key_file": str(key_file), **tls},
        }
        listener(factories.channel(mllp_port, source_config=config))
        return mllp_port

    return start


def client_context(pki: PKI, cert: tuple[Path, Path] | None = None, ca: Issuer | None = None):
    config = TLSConfig(
        ca_file=(ca or pki.ca).cert_file,
        cert_file=cert[0] if cert else None,
        key_file=cert[1] if cert else None,
    )
    return config.client_context()


def msa(raw: bytes) -> tuple[str, str]:
    ack = hl7v2.parse(raw)
    return ack.get("MSA-1"), ack.get("MSA-2")


def refused(port: int, context: ssl.SSLContext | None, control_id: str) -> bool:
    """True when the listener does not take the message: no ACK, the connection ends."""
    try:
        with MLLPClient("127.0.0.1", port, timeout=5, tls=context) as client:
            client.send(factories.adt_a01(control_id))
    except (ssl.SSLError, ConnectionError):
        return True
    return False


def test_handshake_and_aa_over_tls(tls_listener, pki):
    port = tls_listener()
    with MLLPClient("127.0.0.1", port, tls=client_context(pki)) as client:
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert msa(client.send(factories.adt_a01("TLS-1"))) == ("AA", "TLS-1")
        assert msa(client.send(factories.adt_a01("TLS-2"))) == ("AA", "TLS-2")
    assert Message.objects.filter(control_id__startswith="TLS-").count() == 2


def test_plaintext_client_on_a_tls_port_is_dropped_and_tls_clients_carry_on(tls_listener, pki):
    port = tls_listener()
    with MLLPClient("127.0.0.1", port, tls=client_context(pki)) as good:
        assert refused(port, None, "PLAIN-1")
        assert msa(good.send(factories.adt_a01("GOOD-1"))) == ("AA", "GOOD-1")
    assert not Message.objects.filter(control_id="PLAIN-1").exists()


def test_client_certificate_required_and_missing_is_refused(tls_listener, pki):
    port = tls_listener(ca_file=str(pki.ca.cert_file), require_client_cert=True)
    assert refused(port, client_context(pki), "NOCERT-1")
    with MLLPClient("127.0.0.1", port, tls=client_context(pki, pki.client)) as client:
        assert msa(client.send(factories.adt_a01("CERT-1"))) == ("AA", "CERT-1")
    assert list(Message.objects.values_list("control_id", flat=True)) == ["CERT-1"]


def test_client_certificate_from_another_ca_is_refused(tls_listener, pki):
    port = tls_listener(ca_file=str(pki.ca.cert_file), require_client_cert=True)
    assert refused(port, client_context(pki, pki.stranger), "STRANGER-1")
    assert not Message.objects.exists()


def test_optional_client_certificate_takes_none_but_refuses_an_untrusted_one(tls_listener, pki):
    port = tls_listener(ca_file=str(pki.ca.cert_file))
    with MLLPClient("127.0.0.1", port, tls=client_context(pki)) as client:
        assert msa(client.send(factories.adt_a01("ANON-1"))) == ("AA", "ANON-1")
    assert refused(port, client_context(pki, pki.stranger), "STRANGER-2")
    assert list(Message.objects.values_list("control_id", flat=True)) == ["ANON-1"]


def test_a_client_trusting_another_ca_refuses_the_listener(tls_listener, pki):
    port = tls_listener()
    with pytest.raises(ssl.SSLCertVerificationError):
        MLLPClient("127.0.0.1", port, tls=client_context(pki, ca=pki.other_ca))


def test_the_listener_keeps_serving_while_peers_fail_their_handshakes(
    tls_listener, pki, listener_log
):
    port = tls_listener(ca_file=str(pki.ca.cert_file), require_client_cert=True)
    good_context = client_context(pki, pki.client)
    with MLLPClient("127.0.0.1", port, tls=good_context) as held:
        for i in range(5):
            assert refused(port, None, f"PLAIN-{i}")
            assert refused(port, client_context(pki), f"NOCERT-{i}")
            assert refused(port, client_context(pki, pki.stranger), f"STRANGER-{i}")
            assert msa(held.send(factories.adt_a01(f"HELD-{i}")))[0] == "AA"
            with MLLPClient("127.0.0.1", port, tls=good_context) as fresh:
                assert msa(fresh.send(factories.adt_a01(f"FRESH-{i}")))[0] == "AA"
    assert Message.objects.count() == 10
    # Refusals are logged (at most one line a second under a flood, so at least the first).
    assert any("TLS handshake failed" in line for line in listener_log)


def test_a_stalled_handshake_holds_no_one_up_and_is_cut_off(tls_listener, pki):
    import socket

    port = tls_listener(frame_timeout_s=1)
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"\x16\x03\x01")  # the start of a TLS record, then nothing
        with MLLPClient("127.0.0.1", port, tls=client_context(pki)) as client:
            assert msa(client.send(factories.adt_a01("BESIDE-1"))) == ("AA", "BESIDE-1")
        stalled.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # closed by the listener, not by us
            assert stalled.recv(1024) == b""


def test_a_bad_tls_configuration_stops_the_listener_from_starting(mllp_port, pki):
    from channels_app.management.commands.run_listeners import database_conninfo, listener_specs
    from channels_app.pipeline.ingest import GroupCommitter
    from channels_app.sources.mllp import MLLPServer

    cert_file, _ = pki.server
    config = {"host": "127.0.0.1", "port": mllp_port, "tls": {"cert_file": str(cert_file)}}
    channel = factories.channel(mllp_port, source_config=config)
    [spec] = listener_specs([channel.name])
    server = MLLPServer(spec, GroupCommitter(database_conninfo()))
    with pytest.raises(ValueError, match=r"channel 'test channel \d+': bad TLS: .*key_file"):
        asyncio.run(server.start())
