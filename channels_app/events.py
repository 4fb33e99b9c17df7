"""The pipeline's one seam to the rest of the system: what it enqueues next, and what it reports.

Enqueueing names the Celery tasks instead of importing them (the tasks import the pipeline, so
the pipeline cannot import them back). Reports are made once per batch, never per message:
a stage hands over what its batch did, and a background thread per process adds it to the
per-minute statistics in Redis (channels_app.stats, one round trip) and tells the dashboards
through the channel layer. The message path only puts the batch on a queue, so a slow or absent
Redis never slows or stops a message. ``console`` subscribes to ``GROUP``; nothing here imports it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, TypedDict

from celery import current_app
from celery.utils import uuid
from kombu import Producer

from channels_app import stats

log = logging.getLogger(__name__)

# --- enqueueing

# One task carries many ids: the listener batches messages per commit, processing batches
# deliveries; per-message task overhead would otherwise dominate.
PROCESS_CHUNK: Final = 200
DELIVER_CHUNK: Final = 50
PROCESS_TASK: Final = "channels_app.tasks.process_messages"
DELIVER_TASK: Final = "channels_app.tasks.deliver"
REPLAY_TASK: Final = "channels_app.tasks.replay_job"
NOTICE_TASK: Final = "channels_app.tasks.send_alert_notice"


def enqueue_processing(message_ids: Sequence[int], producer: Producer | None = None) -> None:
    for start in range(0, len(message_ids), PROCESS_CHUNK):
        _publish(PROCESS_TASK, list(message_ids[start : start + PROCESS_CHUNK]), producer)


def enqueue_deliveries(delivery_ids: Sequence[int]) -> None:
    for start in range(0, len(delivery_ids), DELIVER_CHUNK):
        _publish(DELIVER_TASK, list(delivery_ids[start : start + DELIVER_CHUNK]))


def _publish(task: str, ids: list[int], producer: Producer | None = None) -> None:
    """A task of ``ids``, built and published by Celery (its retry policy and publish signals
    included) without what ``send_task`` does on every call that a list of ids does not need:
    routing the name again, a result object, and the repr of the arguments for the task's
    headers, which grows with the list. About 560 → 200 µs of Python here, and the listener's
    dispatcher thread holds it against the event loop."""
    app = current_app
    summary = f"[<{len(ids)} ids from {ids[0]}>]"  # the callers' chunks are never empty
    message = app.amqp.create_task_message(
        uuid(), task, (ids,), {}, argsrepr=summary, kwargsrepr="{}"
    )
    with app.producer_or_acquire(producer) as held:
        app.amqp.send_task_message(held, task, message, queue=_queue(task))


@functools.cache
def _queue(task: str) -> str:
    return current_app.amqp.router.route({}, task)["queue"].name


class Publisher:
    """Enqueues processing on a producer of its own, for the one thread that publishes often
    (the listener's dispatcher): taking a producer from Celery's pool costs about half as much
    again as the publish. After a failed publish the next one starts on a fresh producer."""

    def __init__(self) -> None:
        self.producer: Producer | None = None

    def processing(self, message_ids: Sequence[int]) -> None:
        if self.producer is None:
            self.producer = current_app.producer_pool.acquire(block=True)
        try:
            enqueue_processing(message_ids, self.producer)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        """Give the producer back to Celery's pool (the next publish takes another)."""
        producer, self.producer = self.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # its connection may be gone
                producer.release()


def start_replay_job(job_id: int, countdown: float = 0) -> None:
    """A bulk replay's task; a rated job's next step comes back ``countdown`` seconds later."""
    current_app.send_task(REPLAY_TASK, args=[job_id], countdown=countdown or None)


def retry_alert_notice(notice_id: int, after_s: float) -> None:
    current_app.send_task(NOTICE_TASK, args=[notice_id], countdown=after_s)


# --- what dashboards receive (channel layer group GROUP, wrapped as {"type": HANDLER, "event": ...})

GROUP: Final = "hub-dashboard"
HANDLER: Final = "hub.event"
Stage = Literal["ingest", "process", "deliver"]


class StatsChanged(TypedDict):
    """The statistics moved: read them again (channels_app.stats)."""

    type: Literal["stats"]
    stages: list[Stage]
    channels: list[int]


class ErrorRow(TypedDict):
    """One error as it happened. ``reason`` and ``path`` are as recorded: a consumer masks PHI."""

    at: str  # ISO 8601
    message_id: int
    channel_id: int
    destination_id: int  # 0 unless the error is a delivery's
    message_type: str
    stage: str
    path: str
    reason: str


class ErrorsOccurred(TypedDict):
    type: Literal["errors"]
    errors: list[ErrorRow]


Event = StatsChanged | ErrorsOccurred


# --- what the stages report


@dataclass(frozen=True, slots=True)
class Sent:
    """One delivery attempt settled by the deliver stage."""

    channel_id: int
    destination_id: int
    message_id: int
    message_type: str
    status: str  # DELIVERED, FAILED, RETRY
    attempt: str  # success, transient, permanent
    received_at: datetime | None
    processed_at: datetime | None
    error: str = ""


def received(items: Iterable, results: Iterable) -> None:
    """Ingest committed a batch: ``items`` (ingest.Inbound) and their ``results``
    (ingest.Stored, or an exception for a message that could not be stored)."""
    tally, errors = stats.Tally(), []
    for item, result in zip(items, results, strict=True):
        message_id = getattr(result, "message_id", None)
        if not message_id:
            continue  # a duplicate, or not stored: nothing new happened
        scope = (item.channel_id, 0)
        tally.count(item.received_at, scope, stats.RECEIVED)
        if item.message_type:
            tally.count(item.received_at, scope, stats.TYPE_PREFIX + item.message_type)
        if item.error:
            tally.count(item.received_at, scope, stats.ERROR_PREFIX + item.error_stage)
            errors.append(
                _error_row(
                    item.received_at,
                    message_id,
                    item.channel_id,
                    item.message_type,
                    item.error_stage,
                    getattr(item.error, "location", "") or "",
                    str(item.error),
                )
            )
    _report("ingest", tally, errors)


def processed(messages: Iterable) -> None:
    """Process settled a batch of messages (channels_app.models.Message, with status, timings,
    type and error fields loaded)."""
    tally, errors = stats.Tally(), []
    for m in messages:
        at, scope = m.processed_at or datetime.now(UTC), (m.channel_id, 0)
        if m.status == "ERROR":
            tally.count(at, scope, stats.ERROR_PREFIX + (m.error_stage or "process"))
            errors.append(
                _error_row(
                    at,
                    m.id,
                    m.channel_id,
                    m.message_type,
                    m.error_stage,
                    m.error_path,
                    m.error_detail,
                )
            )
            continue
        tally.count(at, scope, stats.FILTERED if m.status == "FILTERED" else stats.PROCESSED)
        if m.received_at:
            tally.latency(at, scope, stats.PROCESS, (at - m.received_at).total_seconds())
    _report("process", tally, errors)


def delivered(sent: Iterable[Sent]) -> None:
    """Deliver settled a batch of attempts."""
    now = datetime.now(UTC)
    tally, errors = stats.Tally(), []
    for s in sent:
        scope = (s.channel_id, s.destination_id)
        tally.count(now, scope, stats.ATTEMPT_PREFIX + s.attempt)
        if s.status == "DELIVERED":
            tally.count(now, scope, stats.DELIVERED)
            if s.received_at:
                tally.latency(now, scope, stats.TOTAL, (now - s.received_at).total_seconds())
            if s.processed_at:
                tally.latency(now, scope, stats.DELIVER, (now - s.processed_at).total_seconds())
        elif s.status == "RETRY":
            tally.count(now, scope, stats.RETRYING)
        elif s.status == "FAILED":
            tally.count(now, scope, stats.FAILED)
            tally.count(now, scope, stats.ERROR_PREFIX + "deliver")
            row = _error_row(
                now, s.message_id, s.channel_id, s.message_type, "deliver", "", s.error
            )
            errors.append({**row, "destination_id": s.destination_id})
    _report("deliver", tally, errors)


def _error_row(at, message_id, channel_id, message_type, stage, path, reason) -> ErrorRow:
    return {
        "at": at.isoformat(),
        "message_id": message_id,
        "channel_id": channel_id,
        "destination_id": 0,
        "message_type": message_type or "",
        "stage": stage or "",
        "path": path or "",
        "reason": (reason or "")[:500],
    }


def _report(stage: Stage, tally: stats.Tally, errors: list[ErrorRow]) -> None:
    if tally or errors:
        _reporter().put(_Batch(stage, tally, errors))


def flush(timeout: float = 5.0) -> bool:
    """Wait until what this process reported is written and published (tests, shutdown)."""
    return _reporter().wait_idle(timeout)


# --- the background reporter


@dataclass(slots=True)
class _Batch:
    stage: Stage
    tally: stats.Tally
    errors: list[ErrorRow]


class _Reporter:
    """One thread per process: drains the queue, writes the statistics, publishes events.

    Statistics changes are announced at most every STATS_EVERY_S (dashboards re-read them);
    errors go out as soon as they arrive."""

    STATS_EVERY_S: Final = 0.5  # each announcement costs every open dashboard a role check

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self.busy = 0
        self.idle = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.layer = None
        self.announce: StatsChanged | None = None
        self.announced_at = 0.0
        threading.Thread(target=self._run, name="events", daemon=True).start()

    def put(self, batch: _Batch) -> None:
        with self.idle:
            self.busy += 1
        self.queue.put(batch)

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.busy == 0, timeout)

    def _run(self) -> None:
        while True:
            batches = self._next_batches()
            try:
                self._handle(batches)
            except Exception as exc:  # Redis down: statistics are signals, messages go on
                log.warning(
                    "could not report %d batch(es) of pipeline events: %s", len(batches), exc
                )
            with self.idle:
                self.busy -= len(batches)
                self.idle.notify_all()

    def _next_batches(self) -> list[_Batch]:
        wait = None
        if self.announce is not None:
            wait = max(0.0, self.announced_at + self.STATS_EVERY_S - time.monotonic())
        try:
            batches = [self.queue.get(timeout=wait)]
        except queue.Empty:
            return []
        while True:
            try:
                batches.append(self.queue.get_nowait())
            except queue.Empty:
                return batches

    def _handle(self, batches: list[_Batch]) -> None:
        tally = stats.Tally()
        errors: list[ErrorRow] = []
        for batch in batches:
            tally.add(batch.tally)
            errors += batch.errors
            self._note_change(batch)
        stats.write(tally)
        if errors:
            self._publish(ErrorsOccurred(type="errors", errors=errors))
        if self.announce and time.monotonic() - self.announced_at >= self.STATS_EVERY_S:
            announce, self.announce = self.announce, None
            self._publish(announce)
            self.announced_at = time.monotonic()

    def _note_change(self, batch: _Batch) -> None:
        if not batch.tally:
            return
        announce = self.announce or StatsChanged(type="stats", stages=[], channels=[])
        if batch.stage not in announce["stages"]:
            announce["stages"].append(batch.stage)
        channels = {int(name.split(":", 1)[0]) for _, name in batch.tally.fields}
        announce["channels"] = sorted(set(announce["channels"]) | channels)
        self.announce = announce

    def _publish(self, event: Event) -> None:
        if self.layer is None:
            from channels.layers import get_channel_layer

            self.layer = get_channel_layer()
        if self.layer is not None:
            self.loop.run_until_complete(
                self.layer.group_send(GROUP, {"type": HANDLER, "event": event})
            )


_lock = threading.Lock()
_current: _Reporter | None = None


def _reporter() -> _Reporter:
    """This process's reporter (a forked worker starts its own: threads do not survive a fork)."""
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = _Reporter()
        return _current


@atexit.register
def _flush_at_exit() -> None:
    if _current is not None and _current.pid == os.getpid():
        _current.wait_idle(2.0)
