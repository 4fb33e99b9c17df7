"""File pickup over a real directory, database, Redis and worker: files become messages, move
only after the commit, half-written files wait, and a re-read after a crash stores nothing twice."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Sum

from channels_app.models import Channel, DedupeEntry, Message
from channels_app.sealing import unseal
from tests import factories
from tests.support import ListenerThread, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Far above the writer's pauses below, so a slow, shared machine cannot make a pause look like
# a finished file; files dropped whole are back-dated (drop()) and cost no settle time.
SETTLE_S = 3.0
WRITER_PAUSE_S = 0.3  # several polls (interval 0.1 s), a tenth of the settle time


@pytest.fixture
def inbox(tmp_path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def pickup(celery_worker, fhir_sink, inbox):
    """A file channel polling ``inbox`` and delivering to the FHIR sink; started on demand."""
    from channels_app.management.commands.run_listeners import database_conninfo, pickup_specs

    config = {"directory": str(inbox), "interval_s": 0.1, "settle_s": SETTLE_S}
    channel = factories.channel(0, source_type=Channel.SourceType.FILE, source_config=config)
    factories.fhir_destination(channel, fhir_sink.url)
    threads: list[ListenerThread] = []

    def start() -> Channel:
        pickups = pickup_specs([channel.name])
        threads.append(ListenerThread([], database_conninfo(), pickups).start())
        return channel

    yield start
    for thread in threads:
        thread.stop()


def drop(directory: Path, name: str, data: bytes) -> Path:
    """A finished file, dated a little in the past as if written a moment ago."""
    path = directory / name
    path.write_bytes(data)
    past = time.time() - 2 * SETTLE_S
    os.utime(path, (past, past))
    return path


def statuses(*control_ids: str) -> set[str]:
    return set(Message.objects.filter(control_id__in=control_ids).values_list("status", flat=True))


def test_messages_end_processed_and_the_file_moves_only_after_the_commit(pickup, inbox):
    pickup()
    drop(inbox, "two.hl7", factories.adt_a01("F-1") + factories.oru_r01("F-2"))
    # The file shows up in processed/ only once its messages are committed.
    wait_for(lambda: (inbox / "processed" / "two.hl7").exists(), what="the file to be moved")
    assert Message.objects.filter(control_id__in=["F-1", "F-2"]).count() == 2
    assert not (inbox / "two.hl7").exists()
    wait_for(lambda: statuses("F-1", "F-2") == {"PROCESSED"}, what="both messages processed")
    m = Message.objects.get(control_id="F-1")
    assert unseal(m.raw) == factories.adt_a01("F-1") and m.remote_addr == "file:two.hl7"


def test_a_batch_file_is_split_into_its_messages(pickup, inbox):
    pickup()
    messages = [factories.adt_a01(f"B-{i}") for i in range(3)]
    batch = (
        b"FHS|^~\\&|EPIC|HOSP|HUB|HUB|20240101\rBHS|^~\\&|EPIC|HOSP|HUB|HUB|20240101\r"
        + b"".join(messages)
        + b"BTS|3\rFTS|1\r"
    )
    drop(inbox, "batch.hl7", batch)
    wait_for(lambda: (inbox / "processed" / "batch.hl7").exists(), what="the batch to be moved")
    wait_for(lambda: statuses("B-0", "B-1", "B-2") == {"PROCESSED"}, what="3 messages processed")
    stored = Message.objects.order_by("id")
    assert [unseal(m.raw) for m in stored] == messages  # each message alone, envelope dropped


def test_a_file_that_cannot_be_split_goes_to_error_with_its_reason(pickup, inbox):
    pickup()
    drop(inbox, "garbage.hl7", b"this is not HL7 at all\r")
    short = factories.adt_a01("LOST-1") + b"BTS|2\r"  # the trailer says a message is missing
    drop(inbox, "short.hl7", b"BHS|^~\\&|EPIC|HOSP\r" + short)
    drop(inbox, "good.hl7", factories.adt_a01("AFTER-BAD"))
    wait_for(lambda: (inbox / "processed" / "good.hl7").exists(), what="the good file moved")
    wait_for(lambda: (inbox / "error" / "short.hl7").exists(), what="the short batch in error/")
    assert (inbox / "error" / "garbage.hl7").exists()
    reason = (inbox / "error" / "garbage.hl7.error.txt").read_text()
    assert reason.startswith("garbage.hl7: cannot be split") and "MSH" in reason
    reason = (inbox / "error" / "short.hl7.error.txt").read_text()
    assert "BTS-1 says 2 messages but 1 were read" in reason
    assert list(Message.objects.values_list("control_id", flat=True)) == ["AFTER-BAD"]


def test_a_file_still_being_written_is_not_taken_half_written(pickup, inbox):
    pickup()
    full = factories.adt_a01("SLOW-1")
    lines = full.split(b"\r")[:-1]
    path = inbox / "slow.hl7"
    with path.open("wb") as f:
        for line in lines:
            f.write(line + b"\r")
            f.flush()
            # A writer pausing well under settle_s between writes, across several polls.
            deadline = time.monotonic() + WRITER_PAUSE_S
            while time.monotonic() < deadline:
                assert path.exists() and not Message.objects.exists(), "taken half-written"
                time.sleep(0.05)
    wait_for(lambda: (inbox / "processed" / "slow.hl7").exists(), what="the finished file")
    assert unseal(Message.objects.get().raw) == full


def test_a_reread_after_commit_stores_nothing_twice(pickup, inbox):
    # processed/ taken by a plain file: every move fails after the commit, as if the process
    # died in between, and each poll reads the file again.
    (inbox / "processed").write_text("in the way")
    channel = pickup()
    no_control_id = factories.adt_a01("")  # MSH-10 empty: no (sender, MSH-10) key
    unreadable = b"MSH|^~\\&|EPIC|HOSP|HUB|HUB|20240101|||BAD-1|P|2.5.1\rPID|1\r"  # no MSH-9
    drop(inbox, "crash.hl7", factories.adt_a01("C-1") + no_control_id + unreadable)

    def duplicates() -> int:
        return DedupeEntry.objects.filter(channel=channel).aggregate(n=Sum("duplicates"))["n"] or 0

    wait_for(lambda: duplicates() >= 6, what="the file read again twice after its commit")
    assert Message.objects.count() == 3
    assert (inbox / "crash.hl7").exists()
    (inbox / "processed").unlink()  # the process comes back healthy
    wait_for(lambda: (inbox / "processed" / "crash.hl7").exists(), what="the file to be moved")
    assert Message.objects.count() == 3
    wait_for(lambda: statuses("C-1") == {"PROCESSED"}, what="the message processed")
    assert Message.objects.get(control_id="BAD-1").status == Message.Status.ERROR


def test_a_file_the_database_refuses_stays_for_the_next_poll(pickup, inbox):
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE channels_app_message ADD CONSTRAINT test_refuse"
            " CHECK (control_id <> 'REFUSED')"
        )
    try:
        pickup()
        drop(inbox, "refused.hl7", factories.adt_a01("REFUSED"))
        drop(inbox, "fine.hl7", factories.adt_a01("FINE"))
        wait_for(lambda: (inbox / "processed" / "fine.hl7").exists(), what="the other file")
        time.sleep(0.5)  # several polls
        assert (inbox / "refused.hl7").exists() and not (inbox / "error").exists()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE channels_app_message DROP CONSTRAINT test_refuse")
    wait_for(lambda: (inbox / "processed" / "refused.hl7").exists(), what="the refused file")
    wait_for(lambda: statuses("REFUSED", "FINE") == {"PROCESSED"}, what="both processed")


def test_a_file_dropped_again_under_a_taken_name_keeps_both(pickup, inbox):
    pickup()
    drop(inbox, "same.hl7", factories.adt_a01("SAME-1"))
    wait_for(lambda: (inbox / "processed" / "same.hl7").exists(), what="the first file")
    drop(inbox, "same.hl7", factories.adt_a01("SAME-2"))
    wait_for(lambda: len(list((inbox / "processed").iterdir())) == 2, what="the second file")
    assert Message.objects.count() == 2


def test_bad_pickup_settings_are_refused_naming_the_channel(db):
    from channels_app.management.commands.run_listeners import pickup_specs

    channel = factories.channel(
        0, source_type=Channel.SourceType.FILE, source_config={"interval_s": 0}
    )
    with pytest.raises(ValueError, match=f"channel '{channel.name}': bad file pickup settings"):
        pickup_specs([channel.name])
