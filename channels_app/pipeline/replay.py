"""Stage 5: replay what failed, for one message or thousands, and resend an operator's edit.

Two modes, both over message ids:

    redeliver  the same canonical payload again, to every destination whose delivery FAILED (or
               only to the destinations chosen): the delivery goes back to PENDING with a fresh attempt budget; its attempts stay, and
               its idempotency key (stable per message and destination) keeps the effect single
               at the destination.
    reprocess  parse and map again with the channel's current mapping, for messages in ERROR or
               with a FAILED delivery: the message goes back to RECEIVED and through the normal
               processing task, which resets its FAILED deliveries and leaves the others alone.
               It routes by the channel's rules as they are now, so it takes no destinations.

Each batch is one conditional UPDATE ("FAILED -> PENDING", "ERROR -> RECEIVED"), so two operators
replaying the same messages at once replay each of them once. A large selection runs as a
ReplayJob, one committed batch at a time, whose done/total the console and the API poll.
Before anything runs, ``preview`` says what a replay would take and skip and where it would go.
A job may be given a rate (its task takes about a second's worth of messages, then schedules
its next step: no worker waits), and is paused, resumed or cancelled between batches. Each
message it takes gets a ReplayItem whose outcome (delivered, failed again, errored again, still
retrying, skipped and why) is read from what actually happened, never assumed.

The page, the REST API and the Celery task all call these functions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, CharField, Count, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from adapters.base import AdapterError
from adapters.codecs import bounded_json, fhir_json, hl7v2
from adapters.codecs.hl7v2_ack import Header
from channels_app import events
from channels_app.models import Delivery, Message, ReplayItem, ReplayJob
from channels_app.sealing import SealError, seal, unseal

Mode = ReplayJob.Mode
Item = ReplayItem.Outcome
MODES = tuple(Mode.values)

BATCH = 500
# Selections up to this size are replayed in the request; larger ones by a task, with progress.
INLINE_MAX = 100
# A bigger selection is refused: narrow the filter (a job row holds its ids).
MAX_SELECTION = 100_000
# A running job whose last step is this old is resumed by the sweeper.
STALLED_AFTER = timedelta(seconds=60)
# A rated job steps about once a second; the slowest rate keeps its steps well inside
# STALLED_AFTER (the sweeper would start a second chain of tasks otherwise).
MIN_RATE, MAX_RATE = 0.1, 10_000.0
# A task a little early for its step (clock, broker) still takes it.
STEP_SLACK = timedelta(milliseconds=200)

# Why a message was not replayed.
NOT_FOUND = "not found"
PRUNED = "body pruned"
IN_PROGRESS = "still being processed"
NOT_FAILED = "not failed"
NOT_ROUTED = "never routed: reprocess it"
NOT_FAILED_THERE = "nothing failed at the chosen destinations"

# One statement per batch: reset what failed, and read every message's state as it was, to say
# why the others were skipped.
REDELIVER = """
WITH reset AS (
    UPDATE channels_app_delivery AS d
    SET status = 'PENDING', next_attempt_at = %(now)s, attempts_at_replay = d.attempt_count
    FROM channels_app_message AS m
    WHERE d.message_id = ANY(%(ids)s) AND d.status = 'FAILED'
      AND (cardinality(%(destinations)s::bigint[]) = 0 OR d.destination_id = ANY(%(destinations)s))
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


def replay(message_ids: list[int], mode: str, destinations: Sequence[int] = ()) -> Replayed:
    """Replay the failed among ``message_ids`` (redeliver or reprocess), one batch at a time;
    the work is enqueued when each batch commits. ``destinations`` limits a redeliver."""
    mode = parse_mode(mode)
    destinations = parse_destinations(mode, destinations)
    ids = sorted({int(i) for i in message_ids})
    result = Replayed(mode)
    for start in range(0, len(ids), BATCH):
        result.add(_replay_batch(ids[start : start + BATCH], mode, destinations))
    return result


def parse_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown replay mode {mode!r}; modes: {', '.join(MODES)}")
    return mode


def parse_destinations(mode: str, destinations: Sequence[int]) -> list[int]:
    """The destinations a redeliver is limited to. A reprocess routes as the channel's rules
    say (a message may be routed differently now), so it takes no such limit."""
    destinations = sorted({int(d) for d in destinations})
    if destinations and mode == Mode.REPROCESS:
        raise ValueError(
            "a reprocess routes by the channel's rules: choose destinations with redeliver"
        )
    return destinations


def _replay_batch(ids: list[int], mode: str, destinations: Sequence[int] = ()) -> Replayed:
    statement = REDELIVER if mode == Mode.REDELIVER else REPROCESS
    params = {"ids": ids, "now": timezone.now(), "destinations": list(destinations)}
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
        result = _judge(
            ids, mode, rows, not_failed=NOT_FAILED_THERE if destinations else NOT_FAILED
        )
        if result.enqueued:
            enqueue = (
                events.enqueue_deliveries if mode == Mode.REDELIVER else events.enqueue_processing
            )
            work = list(result.enqueued)
            transaction.on_commit(lambda: enqueue(work))
    return result


def _judge(ids: list[int], mode: str, rows, *, not_failed: str = NOT_FAILED) -> Replayed:
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
            reason = not_failed
        result.skipped.setdefault(reason, []).append(message_id)
    missing = [i for i in ids if i not in seen]
    if missing:
        result.skipped[NOT_FOUND] = missing
    result.replayed.sort()
    return result


def _failed_at(destinations: Sequence[int]) -> Exists:
    failed = Delivery.objects.filter(message_id=OuterRef("pk"), status=Delivery.Status.FAILED)
    if destinations:
        failed = failed.filter(destination_id__in=destinations)
    return Exists(failed)


def _taken(mode: str, destinations: Sequence[int]) -> Q:
    """What the batch statements take (REDELIVER, REPROCESS), as a condition on a message."""
    failed = Q(_failed_at(destinations))
    if mode == Mode.REDELIVER:
        return Q(pruned_at__isnull=True) & failed
    received = Q(status=Message.Status.RECEIVED)
    return Q(pruned_at__isnull=True) & (Q(status=Message.Status.ERROR) | (failed & ~received))


def candidates(messages, mode: str, destinations: Sequence[int] = ()):
    """``messages`` (a Message queryset, e.g. a filter) narrowed to those a replay would take."""
    mode = parse_mode(mode)
    return messages.filter(_taken(mode, parse_destinations(mode, destinations)))


def selected_ids(messages, mode: str, destinations: Sequence[int] = ()) -> list[int]:
    """The ids a bulk replay of ``messages`` would take, one past the limit (so that a selection
    too large is refused, not cut short)."""
    selected = candidates(messages, mode, destinations).order_by("id")
    return list(selected.values_list("id", flat=True)[: MAX_SELECTION + 1])


# --- dry run


def preview(messages, mode: str, destinations: Sequence[int] = (), *, asked: int | None = None):
    """What a replay of ``messages`` (a queryset: a filter, or the ids given) would do, without
    doing it: how many it would take, how many it would skip and why (judged as the batch
    statements judge), and where the taken would go. ``asked``: how many ids were given (those
    not found are counted as skipped). Three statements, whatever the number of messages."""
    mode = parse_mode(mode)
    destinations = parse_destinations(mode, destinations)
    taken = _taken(mode, destinations)
    reasons = [When(pruned_at__isnull=False, then=Value(PRUNED)), When(taken, then=Value(""))]
    reasons.append(When(status=Message.Status.RECEIVED, then=Value(IN_PROGRESS)))
    if mode == Mode.REDELIVER:
        reasons.append(When(status=Message.Status.ERROR, then=Value(NOT_ROUTED)))
    not_failed = NOT_FAILED_THERE if destinations else NOT_FAILED
    judged = messages.order_by().annotate(
        reason=Case(*reasons, default=Value(not_failed), output_field=CharField())
    )
    tally = Counter(dict(judged.values_list("reason").annotate(n=Count("id"))))
    matching = sum(tally.values())
    if asked is not None and asked > matching:
        tally[NOT_FOUND] = asked - matching
    would = tally.pop("", 0)
    return {
        "mode": mode,
        "matching": matching,
        "replay": would,
        "skipped": dict(sorted(tally.items())),
        "destinations": _destinations_of(messages.filter(taken), destinations),
        "rerouted": _rerouted(messages.filter(taken), mode),
        "too_many": would > MAX_SELECTION,
    }


def _destinations_of(taken, destinations: Sequence[int]) -> list[dict]:
    """Each destination a failed delivery of the taken messages goes to again, with how many."""
    failed = Delivery.objects.filter(
        status=Delivery.Status.FAILED, message_id__in=taken.order_by().values("id")
    )
    if destinations:
        failed = failed.filter(destination_id__in=destinations)
    counted = failed.values("destination_id", "destination__name").annotate(n=Count("id"))
    return [
        {"id": row["destination_id"], "name": row["destination__name"], "messages": row["n"]}
        for row in counted.order_by("destination__name")
    ]


def _rerouted(taken, mode: str) -> int:
    """Reprocess: the messages in error, whose destinations the channel's rules choose anew."""
    if mode != Mode.REPROCESS:
        return 0
    return taken.filter(status=Message.Status.ERROR).count()


# --- bulk


class SelectionTooLarge(ValueError):
    pass


def start_job(
    message_ids: list[int],
    mode: str,
    *,
    selection: dict,
    user=None,
    destinations: Sequence[int] = (),
    rate: float | None = None,
) -> ReplayJob:
    """Replay a selection as a job: at once when it is small and unrated, else by a task (a rated
    one steps at ``rate`` messages per second); poll the job."""
    mode = parse_mode(mode)
    destinations = parse_destinations(mode, destinations)
    if rate is not None and not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"a rate is {MIN_RATE} to {MAX_RATE} messages per second")
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
        destination_ids=destinations,
        rate=rate,
        total=len(ids),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    if len(ids) <= INLINE_MAX and rate is None:
        return run_job(job.pk)
    transaction.on_commit(lambda: events.start_replay_job(job.pk))
    return job


def run_job(job_id: int) -> ReplayJob | None:
    """Run a job: an unrated one to its end, one committed batch at a time (a restarted task
    carries on where the last one stopped); a rated one a step, the next step scheduled when it
    is due. None when the job does not exist."""
    while True:
        try:
            with transaction.atomic():
                wait = _job_step(job_id)
        except Exception as exc:
            ReplayJob.objects.filter(pk=job_id, state=ReplayJob.State.RUNNING).update(
                state=ReplayJob.State.FAILED,
                finished_at=timezone.now(),
                error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            raise
        if wait is None:
            break
        if wait:
            events.start_replay_job(job_id, countdown=wait)
            break
    return ReplayJob.objects.filter(pk=job_id).first()


def _job_step(job_id: int) -> float | None:
    """Replay the job's next batch; the seconds until the step after (0: at once), or None when
    there is nothing (more) to do here: the job is over, paused, or another task steps it."""
    job = ReplayJob.objects.select_for_update().defer("message_ids").filter(pk=job_id).first()
    if job is None or job.state != ReplayJob.State.RUNNING:
        return None
    now = timezone.now()
    if job.next_step_at and now < job.next_step_at - STEP_SLACK:
        return None  # a second chain of tasks (a resume, the sweeper): the first one goes on
    size = BATCH if job.rate is None else min(BATCH, max(1, round(job.rate)))
    batch = _next_ids(job, size)
    if not batch:
        job.state, job.finished_at = ReplayJob.State.DONE, now
        job.updated_at = now
        job.save(update_fields=["state", "finished_at", "updated_at"])
        return None
    result = _replay_batch(batch, job.mode, job.destination_ids)
    _record_items(job, result, now)
    tally = Counter(job.skipped or {})
    tally.update(result.counts()["skipped"])
    wait = 0.0 if job.rate is None else size / job.rate
    ReplayJob.objects.filter(pk=job_id).update(
        done=F("done") + len(batch),
        replayed=F("replayed") + len(result.replayed),
        skipped=dict(sorted(tally.items())),
        updated_at=now,
        next_step_at=now + timedelta(seconds=wait) if wait else None,
    )
    return wait


def _next_ids(job: ReplayJob, size: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT message_ids[%s : %s] FROM channels_app_replayjob WHERE id = %s",
            [job.done + 1, job.done + size, job.pk],
        )
        return cursor.fetchone()[0] or []


RECORD_ITEMS = """
INSERT INTO channels_app_replayitem (job_id, message_id, outcome, detail, at)
SELECT %(job)s, message_id, outcome, detail, %(now)s
FROM unnest(%(messages)s::bigint[], %(outcomes)s::text[], %(details)s::text[])
    AS n(message_id, outcome, detail)
ON CONFLICT (job_id, message_id) DO NOTHING
"""


def _record_items(job: ReplayJob, result: Replayed, now) -> None:
    """One row per message the batch took or skipped (those not found have no row to point at)."""
    rows = [(m, Item.IN_PROGRESS, "") for m in result.replayed]
    rows += [
        (m, Item.SKIPPED, reason)
        for reason, ids in result.skipped.items()
        if reason != NOT_FOUND
        for m in ids
    ]
    if not rows:
        return
    messages, outcomes, details = zip(*rows, strict=True)
    params = {"job": job.pk, "now": now, "messages": list(messages)}
    params |= {"outcomes": list(outcomes), "details": list(details)}
    with connection.cursor() as cursor:
        cursor.execute(RECORD_ITEMS, params)


# --- steering: pause, resume, cancel


class NotNow(ValueError):
    """The job is not in a state that allows this (e.g. resuming a finished job)."""


def pause(job_id: int) -> ReplayJob:
    """Stop a running job after its current batch; its place is kept."""
    return _move(job_id, ReplayJob.State.PAUSED, frm=[ReplayJob.State.RUNNING])


def resume(job_id: int) -> ReplayJob:
    """Carry a paused job on from where it stopped."""
    job = _move(job_id, ReplayJob.State.RUNNING, frm=[ReplayJob.State.PAUSED], next_step_at=None)
    transaction.on_commit(lambda: events.start_replay_job(job_id))
    return job


def cancel(job_id: int) -> ReplayJob:
    """Stop a running or paused job for good; what it replayed already stays replayed."""
    now = timezone.now()
    states = [ReplayJob.State.RUNNING, ReplayJob.State.PAUSED]
    return _move(job_id, ReplayJob.State.CANCELLED, frm=states, finished_at=now)


def _move(job_id: int, state: str, *, frm: list[str], **also) -> ReplayJob:
    moved = ReplayJob.objects.filter(pk=job_id, state__in=frm).update(
        state=state, updated_at=timezone.now(), **also
    )
    job = ReplayJob.objects.defer("message_ids").get(pk=job_id)  # DoesNotExist: no such job
    if not moved:
        raise NotNow(f"the job is {job.get_state_display().lower()}")
    return job


def stalled_jobs(now=None) -> list[int]:
    """Running jobs that stopped moving: their task was lost (Redis) or their runner died. Safe to
    run again: a job's steps are locked and carry on from ``done``. Paused and cancelled jobs are
    not running: they are never resumed here."""
    before = (now or timezone.now()) - STALLED_AFTER
    running = ReplayJob.objects.filter(state=ReplayJob.State.RUNNING, updated_at__lt=before)
    return list(running.order_by("id").values_list("id", flat=True)[:100])


# --- results: what became of each message


# The outcome of each item still moving, read from its message and deliveries (those at the
# job's destinations, when it chose some). One statement for the whole job.
SETTLE = """
WITH live AS (
    SELECT i.id, CASE
        WHEN m.status = 'ERROR' THEN 'errored'
        WHEN m.status = 'RECEIVED' THEN 'in_progress'
        WHEN m.status = 'FILTERED' THEN 'filtered'
        WHEN EXISTS (SELECT 1 FROM channels_app_delivery AS d WHERE d.message_id = m.id
                     AND d.status = 'FAILED' AND (%(anywhere)s OR d.destination_id = ANY(%(at)s)))
            THEN 'failed'
        WHEN EXISTS (SELECT 1 FROM channels_app_delivery AS d WHERE d.message_id = m.id
                     AND d.status = 'RETRY' AND (%(anywhere)s OR d.destination_id = ANY(%(at)s)))
            THEN 'retrying'
        WHEN EXISTS (SELECT 1 FROM channels_app_delivery AS d WHERE d.message_id = m.id
                     AND d.status IN ('PENDING', 'SENDING', 'QUEUED')
                     AND (%(anywhere)s OR d.destination_id = ANY(%(at)s)))
            THEN 'in_progress'
        ELSE 'delivered' END AS outcome
    FROM channels_app_replayitem AS i JOIN channels_app_message AS m ON m.id = i.message_id
    WHERE i.job_id = %(job)s AND i.outcome IN ('in_progress', 'retrying')
      AND (%(message)s::bigint IS NULL OR i.message_id = %(message)s)
)
UPDATE channels_app_replayitem AS i SET outcome = live.outcome
FROM live WHERE i.id = live.id AND i.outcome <> live.outcome
"""


def settle(job: ReplayJob, message_id: int | None = None) -> None:
    """Bring the job's moving items (or only ``message_id``'s) up to date; one that settled
    (delivered, failed again, errored again, filtered) keeps that outcome, whatever happens to
    the message later."""
    params = {"job": job.pk, "at": list(job.destination_ids), "message": message_id}
    params["anywhere"] = not job.destination_ids
    with connection.cursor() as cursor:
        cursor.execute(SETTLE, params)


def outcomes(job: ReplayJob) -> dict[str, int]:
    """How many of the job's messages ended how (settled first): every outcome, zeros included;
    ``skipped`` counts those not found too (they have no item)."""
    settle(job)
    counted = dict(job.items.order_by().values_list("outcome").annotate(n=Count("id")))
    counted[Item.SKIPPED] = sum((job.skipped or {}).values())
    return {value: counted.get(value, 0) for value in Item.values}


def is_settled(counts: dict[str, int]) -> bool:
    """No message of the job is still on its way (in progress or retrying)."""
    return not any(counts[outcome] for outcome in ReplayItem.MOVING)


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
