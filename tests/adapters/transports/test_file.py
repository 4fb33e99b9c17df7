"""The file destination writes each payload whole, under a stable name."""

from __future__ import annotations

import pytest

from adapters.registry import build_transport
from adapters.transports.base import Payload, TransportError


def payload(body: bytes = b"{}", name: str = "message-1") -> Payload:
    return Payload(body, "application/fhir+json", "key", name)


def test_writes_the_payload_under_its_name(tmp_path):
    result = build_transport("file", {"directory": str(tmp_path / "out")}).send(
        payload(b'{"a":1}'), timeout=1
    )
    assert (tmp_path / "out" / "message-1.json").read_bytes() == b'{"a":1}'
    assert "message-1.json" in result.summary


def test_a_retry_overwrites_instead_of_duplicating_and_leaves_no_temp_files(tmp_path):
    t = build_transport("file", {"directory": str(tmp_path)})
    t.send(payload(b"first"), timeout=1)
    t.send(payload(b"second"), timeout=1)
    assert [p.name for p in tmp_path.iterdir()] == ["message-1.json"]
    assert (tmp_path / "message-1.json").read_bytes() == b"second"


def test_unwritable_directory_is_a_transient_error_naming_the_file(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(TransportError) as caught:
        build_transport("file", {"directory": str(blocker)}).send(payload(), timeout=1)
    assert not caught.value.permanent and "not-a-dir" in str(caught.value)
