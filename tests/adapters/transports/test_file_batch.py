"""The file destination's naming pattern and batches."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from datetime import UTC, datetime

import pytest

from adapters.registry import ConfigError, build_transport
from adapters.transports.base import Payload
from tests.support import wait_for


def payload(n: int = 1, body: bytes | None = None) -> Payload:
    return Payload(
        body or json.dumps({"resourceType": "Bundle", "id": f"b{n}"}, indent=1).encode(),
        "application/fhir+json",
        f"key-{n}",
        f"message-{n:010d}",
        None,
        n,
    )


def files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_pattern_places_each_message(tmp_path):
    t = build_transport(
        "file",
        {"directory": str(tmp_path), "filename": "{date:%Y%m%d}/{message_id:06d}-{key}.{ext}"},
    )
    t.send(payload(42), timeout=1)
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert files(tmp_path) == [f"{today}/000042-key-42.json"]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("{nope}.json", "unknown placeholder"),
        ("{key.__class__}.json", "unknown placeholder"),
        ("{name[0]}.json", "unknown placeholder"),
        ("../{name}.json", "inside the directory"),
        ("/etc/{name}.json", "inside the directory"),
        ("{message_id:%Y}.json", "filename"),
        ("{batch}.json", "only known in batch mode"),
        ("{name}.part", "reserved"),
    ],
)
def test_bad_patterns_are_config_errors(tmp_path, pattern, why):
    with pytest.raises(ConfigError, match=why):
        build_transport("file", {"directory": str(tmp_path), "filename": pattern})


def test_a_batch_name_needs_its_batch_id(tmp_path):
    with pytest.raises(ConfigError, match=r"needs \{batch\}"):
        build_transport("file", {"directory": str(tmp_path), "batch": True, "filename": "x.json"})


def test_values_cannot_add_directories(tmp_path):
    t = build_transport("file", {"directory": str(tmp_path), "filename": "{key}.{ext}"})
    t.send(Payload(b"{}", "application/json", "../../evil", "n"), timeout=1)
    assert files(tmp_path) == [".._.._evil.json"]


def batch(tmp_path, **config):
    return build_transport("file", {"directory": str(tmp_path), "batch": True, **config})


def test_a_batch_closes_at_batch_max_as_one_ndjson_file(tmp_path):
    t = batch(tmp_path, batch_max=3)
    results = [t.send(payload(n), timeout=1) for n in range(1, 4)]
    [name] = files(tmp_path)
    assert name.startswith("batch-") and name.endswith(".ndjson")
    lines = (tmp_path / name).read_bytes().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["b1", "b2", "b3"]
    assert "(3/3," in results[-1].summary


def test_an_open_batch_is_a_part_file_until_it_is_old_enough(tmp_path):
    t = batch(tmp_path, batch_max=10, batch_max_age_s=0.3)
    t.send(payload(1), timeout=1)
    t.send(payload(2), timeout=1)
    [name] = files(tmp_path)
    assert name.endswith(".ndjson.part")
    assert len((tmp_path / name).read_bytes().splitlines()) == 2  # on disk already
    [final] = wait_for(lambda: [f for f in files(tmp_path) if f.endswith(".ndjson")], 5)
    assert final == name.removesuffix(".part") and len(files(tmp_path)) == 1


def test_a_retry_within_the_open_batch_is_not_appended_twice(tmp_path):
    t = batch(tmp_path)
    t.send(payload(1), timeout=1)
    assert "a retry" in t.send(payload(1), timeout=1).summary
    t.close()
    [name] = files(tmp_path)
    assert len((tmp_path / name).read_bytes().splitlines()) == 1


def test_leftover_part_files_are_completed_at_start_without_their_torn_line(tmp_path):
    (tmp_path / "sub").mkdir()
    left = tmp_path / "sub" / "batch-x.ndjson.part"
    left.write_bytes(b'{"id":"b1"}\n{"id":"b2"}\n{"id":"b3')  # died mid-write of b3
    t = batch(tmp_path, filename="sub/batch-{batch}.{ext}")
    assert files(tmp_path) == ["sub/batch-x.ndjson.part"]  # building a config touches nothing
    t.send(payload(4), timeout=1)
    assert "sub/batch-x.ndjson" in files(tmp_path)
    assert (tmp_path / "sub" / "batch-x.ndjson").read_bytes() == b'{"id":"b1"}\n{"id":"b2"}\n'


def test_a_part_file_another_process_holds_is_left_alone(tmp_path):
    held = tmp_path / "batch-y.ndjson.part"
    held.write_bytes(b"{}\n")
    fd = os.open(held, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a separate open file description: another writer
        t = batch(tmp_path)
        t.send(payload(1), timeout=1)
        assert "batch-y.ndjson.part" in files(tmp_path)
        t.close()
        assert len(files(tmp_path)) == 2 and "batch-y.ndjson.part" in files(tmp_path)
    finally:
        os.close(fd)


def test_threads_share_the_open_batch(tmp_path):
    t = batch(tmp_path, batch_max=50)

    def work(worker):
        for n in range(25):
            t.send(payload(worker * 100 + n), timeout=1)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = files(tmp_path)
    assert len(names) == 4 and all(n.endswith(".ndjson") for n in names)
    ids = [
        json.loads(line)["id"] for n in names for line in (tmp_path / n).read_bytes().splitlines()
    ]
    assert len(ids) == 200 and len(set(ids)) == 200


def test_an_expired_batch_is_closed_by_the_next_send_too(tmp_path):
    t = batch(tmp_path, batch_max_age_s=0.2)
    t.send(payload(1), timeout=1)
    time.sleep(0.25)
    t.send(payload(2), timeout=1)
    t.close()
    assert len(files(tmp_path)) == 2
