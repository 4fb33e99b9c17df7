"""Stage 5: replay what failed, for one message or thousands, and resend an operator's edit.

Two modes, both over message ids:

    redeliver  the same canonical payload again, to every destination whose delivery FAILED: the
               delivery goes back to PENDING with a fresh attempt budget; its attempts stay, and
               its idempotency key (stable per message and destination) keeps the effect single
               at the destination.
    reprocess  parse and map again with the channel's current mapping, for messages in ERROR or
               with a FAILED delivery: the message goes back to RECEIVED and through the normal
               processing task, which resets its FAILED deliveries and leaves the others alone.

Each batch is one conditional UPDATE ("FAILED -> PENDING", "ERROR -> RECEIVED"), so two operators
replaying the same messages at once replay each of them once. A large selection runs as a
ReplayJob, one committed batch at a time, whose done/total the console and the API poll.

The page, the REST API and the Celery task all call these functions.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from adapters.base import AdapterError
from adapters.codecs import bounded_json, fhir_json, hl7v2
from adapters.codecs.hl7v2_ack import Header
from channels_app import events
from channels_app.models import Delivery, Message, ReplayJob
from channels_app.sealing import SealError, seal, unseal

Mode = ReplayJob.Mode
MODES = tuple(Mode.values)

BATCH = 500
# Selections up to this size are replayed in the request; larger ones by a task, with progress.
INLINE_MAX = 100
# A bigger selection is refused: narrow the filter (a job row holds its ids).
MAX_SELECTION = 100_000
# A running job whose last step is this old is resumed by the sweeper.
STALLED_AFTER = timedelta(seconds=60)

# Why a message was not replayed.
NOT_FOUND = "not found"
PRUNED = "body pruned"
IN_PROGRESS = "still being processed"
NOT_FAILED = "not failed"
NOT_ROUTED = "never routed: reprocess it"

# One statement per batch: reset what failed, and read every message's state as it was, to say
# why the others were skipped.
REDELIVER = """
WITH reset AS (
    UPDATE channels_app_delivery AS d
    SET status = 'PENDING', next_attempt_at = %(now)s, attempts_at_replay = d.attempt_count
    FROM channels_app_message AS m
    WHERE d.message_id = ANY(%(ids)s) AND d.status = 'FAILED'
      AND m.id = d.message_id AND m.pruned_at IS NULL
    RETURNING d.id, d.message_id
)
SELECT m.id, m.status, m.pruned_at IS NOT NULL,
       COALESCE((SELECT array_agg(r.id ORDER BY r.id) FROM reset AS r WHERE r.message_id = m.id),
                '{}')
FROM channels_app_message AS m WHERE m.id = ANY(%(ids)s)
"""

# Back to RECEIVED, recorded against the channel's current version (the mapping it will meet).
REPROCESS = """
WITH reset AS (
    UPDATE channels_app_message AS m
    SET status = 'RECEIVED', sweep_after = %(now)s,
        channel_version_id = COALESCE((
            SELECT v.id FROM channels_app_channelversion AS v
            WHERE v.channel_id = m.channel_id ORDER BY v.number DESC LIMIT 1
        ), m.channel_version_id)
    WHERE m.id = ANY(%(ids)s) AND m.pruned_at IS NULL
      AND (m.status = 'ERROR' OR (m.status <> 'RECEIVED' AND EXISTS (
          SELECT 1 FROM channels_app_delivery AS d
          WHERE d.message_id = m.id AND d.status = 'FAILED')))
    RETURNING m.id
)
SELECT m.id, m.status, m.pruned_at IS NOT NULL,
       CASE WHEN m.id IN (SELECT id FROM reset) THEN ARRAY[m.id] ELSE '{}' END
FROM channels_app_message AS m WHERE m.id = ANY(%(ids)s)
"""

# A job's next batch, locked: one runner at a time, carrying on from where the last one stopped.
NEXT_BATCH = """
SELECT mode, state, message_ids[done + 1 : done + %(batch)s], skipped
FROM channels_app_replayjob WHERE id = %(id)s FOR UPDATE
"""


@dataclass(slots=True)
class Replayed:
    """What a replay did: the messages replayed, and those skipped by reason."""

    mode: str
    replayed: list[int] = field(default_factory=list)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    # What was enqueued: delivery ids (redeliver) or message ids (reprocess).
    enqueued: list[int] = field(default_factory=list)

    def counts(self) -> dict:
        return {
            "mode": self.mode,
            "replayed": len(self.replayed),
            "skipped": {reason: len(ids) for reason, ids in sorted(self.skipped.items())},
        }

    def add(self, other: Replayed) -> None:
        self.replayed += other.replayed
        self.enqueued += other.enqueued
        for reason, ids in other.skipped.items():
            self.skipped.setdefault(reason, []).extend(ids)


def replay(message_ids: list[int], mode: str) -> Replayed:
    """Replay the failed among ``message_ids`` (redeliver or reprocess), one batch at a time;
    the work is enqueued when each batch commits."""
    mode = parse_mode(mode)
    ids = sorted({int(i) for i in message_ids})
    result = Replayed(mode)
    for start in range(0, len(ids), BATCH):
        result.add(_replay_batch(ids[start : start + BATCH], mode))
    return result


def parse_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown replay mode {mode!r}; modes: {', '.join(MODES)}")
    return mode


def _replay_batch(ids: list[int], mode: str) -> Replayed:
    statement = REDELIVER if mode == Mode.REDELIVER else REPROCESS
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement, {"ids": ids, "now": timezone.now()})
            rows = cursor.fetchall()
        result = _judge(ids, mode, rows)
        if result.enqueued:
            enqueue = (
                events.enqueue_deliveries if mode == Mode.REDELIVER else events.enqueue_processing
            )
            work = list(result.enqueued)
            transaction.on_commit(lambda: enqueue(work))
    return result


def _judge(ids: list[int], mode: str, rows) -> Replayed:
    result = Replayed(mode)
    seen = set()
    for message_id, status, pruned, enqueued in rows:
        seen.add(message_id)
        if enqueued:
            result.replayed.append(message_id)
            result.enqueued += enqueued
            continue
        if pruned:
            reason = PRUNED
        elif status == Message.Status.RECEIVED:
            reason = IN_PROGRESS
        elif status == Message.Status.ERROR and mode == Mode.REDELIVER:
            reason = NOT_ROUTED
        else:
            reason = NOT_FAILED
        result.skipped.setdefault(reason, []).append(message_id)
    missing = [i for i in ids if i not in seen]
    if missing:
        result.skipped[NOT_FOUND] = missing
    result.replayed.sort()
    return result


def candidates(messages, mode: str):
    """``messages`` (a Message queryset, e.g. a filter) narrowed to those a replay would take."""
    failed = Exists(
        Delivery.objects.filter(message_id=OuterRef("pk"), status=Delivery.Status.FAILED)
    )
    messages = messages.filter(pruned_at__isnull=True)
    if parse_mode(mode) == Mode.REDELIVER:
        return messages.filter(failed)
    received = Q(status=Message.Status.RECEIVED)
    return messages.filter(Q(status=Message.Status.ERROR) | (failed & ~received))


def selected_ids(messages, mode: str) -> list[int]:
    """The ids a bulk replay of ``messages`` would take, one past the limit (so that a selection
    too large is refused, not cut short)."""
    selected = candidates(messages, mode).order_by("id")
    return list(selected.values_list("id", flat=True)[: MAX_SELECTION + 1])


# --- bulk


class SelectionTooLarge(ValueError):
    pass


def start_job(message_ids: list[int], mode: str, *, selection: dict, user=None) -> ReplayJob:
    """Replay a selection as a job: at once when it is small, else by a task; poll the job."""
    mode = parse_mode(mode)
    ids = sorted({int(i) for i in message_ids})
    if len(ids) > MAX_SELECTION:
        raise SelectionTooLarge(
            f"{len(ids)} messages selected; replay at most {MAX_SELECTION} at once "
            "(narrow the filter)"
        )
    job = ReplayJob.objects.create(
        mode=mode,
        selection=selection,
        message_ids=ids,
        total=len(ids),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    if len(ids) <= INLINE_MAX:
        return run_job(job.pk)
    transaction.on_commit(lambda: events.start_replay_job(job.pk))
    return job


def run_job(job_id: int) -> ReplayJob | None:
    """Run a job to its end, one committed batch at a time (a restarted task carries on where the
    last one stopped); None when the job does not exist."""
    while True:
        try:
            with transaction.atomic():
                if not _job_step(job_id):
                    break
        except Exception as exc:
            ReplayJob.objects.filter(pk=job_id, state=ReplayJob.State.RUNNING).update(
                state=ReplayJob.State.FAILED,
                finished_at=timezone.now(),
                error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            raise
    return ReplayJob.objects.filter(pk=job_id).first()


def _job_step(job_id: int) -> bool:
    """Replay the job's next batch; False when there is nothing (more) to do."""
    with connection.cursor() as cursor:
        cursor.execute(NEXT_BATCH, {"id": job_id, "batch": BATCH})
        row = cursor.fetchone()
    if row is None:
        return False
    mode, state, batch, skipped = row
    if state != ReplayJob.State.RUNNING:
        return False
    jobs = ReplayJob.objects.filter(pk=job_id)
    if not batch:
        now = timezone.now()
        jobs.update(state=ReplayJob.State.DONE, finished_at=now, updated_at=now)
        return False
    result = _replay_batch(batch, mode)
    if isinstance(skipped, str):  # raw SQL hands jsonb over as text under Django
        skipped = json.loads(skipped)
    tally = Counter(skipped or {})
    tally.update(result.counts()["skipped"])
    jobs.update(
        done=F("done") + len(batch),
        replayed=F("replayed") + len(result.replayed),
        skipped=dict(sorted(tally.items())),
        updated_at=timezone.now(),
    )
    return True


def stalled_jobs(now=None) -> list[int]:
    """Running jobs that stopped moving: their task was lost (Redis) or their runner died. Safe to
    run again: a job's steps are locked and carry on from ``done``."""
    before = (now or timezone.now()) - STALLED_AFTER
    running = ReplayJob.objects.filter(state=ReplayJob.State.RUNNING, updated_at__lt=before)
    return list(running.order_by("id").values_list("id", flat=True)[:100])


# --- edit and resend


class ResendRefused(ValueError):
    """The edited message cannot be stored: the reason names the place."""


def editable_text(message: Message) -> str:
    """The message as text an operator can edit, one segment per line."""
    try:
        raw = unseal(message.raw)
    except SealError as exc:
        raise ResendRefused(f"the stored body cannot be opened: {exc}") from None
    if _is_json(message):
        return raw.decode("utf-8", "replace")
    text = hl7v2.decode_bytes(raw)[0]
    return "\n".join(hl7v2.split_segments(text.strip("\r\n"), text[3:4] or "|"))


def edit_and_resend(message_id: int, new_raw: str | bytes, user=None, *, remote_addr: str = ""):
    """Store the edited body as a new message on the same channel, linked to the original (which
    is never changed), and send it through the normal pipeline. Raises ResendRefused when the
    edit cannot be read, and Message.DoesNotExist when there is no such message."""
    original = Message.objects.select_related("channel").get(pk=message_id)
    json_body = _is_json(original)
    raw = _edited_bytes(original, new_raw, json_body=json_body)
    if len(raw) > original.channel.max_message_bytes:
        raise ResendRefused(
            f"the edited message is {len(raw)} bytes; the channel takes at most "
            f"{original.channel.max_message_bytes}"
        )
    fields = _read_json(original, raw) if json_body else _read_hl7(raw)
    version = original.channel.current_version()
    with transaction.atomic():
        copy = Message.objects.create(
            channel=original.channel,
            channel_version=version or original.channel_version,
            raw=seal(raw),
            content_type=original.content_type,
            size=len(raw),
            remote_addr=remote_addr[:100],
            resent_from=original,
            resent_by=user if getattr(user, "is_authenticated", False) else None,
            **fields,
        )
        transaction.on_commit(lambda: events.enqueue_processing([copy.pk]))
    return copy


def _is_json(message: Message) -> bool:
    """FHIR JSON, or a channel's custom JSON: anything not HL7 v2 arrived over HTTP as JSON."""
    return "json" in message.content_type


def _edited_bytes(original: Message, new_raw: str | bytes, *, json_body: bool) -> bytes:
    if isinstance(new_raw, bytes):
        return new_raw
    text = new_raw.strip()
    if not text:
        raise ResendRefused("the edited message is empty")
    if json_body:
        return text.encode("utf-8")
    # A browser sends a textarea's lines with CRLF; HL7 v2 ends segments with a carriage return.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    text = "".join(line + "\r" for line in lines if line.strip())
    return _encode(text, _charset_of(original))


def _charset_of(message: Message) -> str:
    try:
        raw = unseal(message.raw)
    except SealError:
        return "utf-8"
    return hl7v2.decode_bytes(raw)[1] if raw else "utf-8"


def _encode(text: str, charset: str) -> bytes:
    """In the original's charset when it can carry the edit (MSH-18 stays true), else UTF-8."""
    try:
        return text.encode(charset)
    except (LookupError, UnicodeEncodeError):
        return text.encode("utf-8")


def _read_hl7(raw: bytes) -> dict:
    try:
        parsed = hl7v2.parse(raw)
    except hl7v2.HL7Error as exc:
        raise ResendRefused(f"the edited message cannot be read: {exc}") from None
    h = Header.of(parsed)  # as ingest reads it, so the copy's sender and dedupe key match
    return {
        "message_type": _text(parsed.message_type, 40),
        "control_id": _text(h.control_id, 200),
        "sending_application": _text(h.sending_application, 200),
        "sending_facility": _text(h.sending_facility, 200),
    }


def _read_json(original: Message, raw: bytes) -> dict:
    """The edit must still be what the channel reads: valid FHIR for FHIR, JSON for the rest (the
    channel's map checks the rest when the copy is processed)."""
    fhir = original.content_type == fhir_json.MEDIA_TYPE
    try:
        if fhir:
            fhir_json.read(raw)
        else:
            bounded_json.loads(raw)
    except (ValueError, AdapterError) as exc:
        kind = "FHIR JSON" if fhir else "JSON"
        raise ResendRefused(f"the edited {kind} cannot be read: {exc}") from None
    return {
        "message_type": original.message_type,
        "control_id": original.control_id,
        "sending_application": original.sending_application,
        "sending_facility": original.sending_facility,
    }


def _text(value: str, limit: int) -> str:
    return (value or "").replace("\x00", "")[:limit]
