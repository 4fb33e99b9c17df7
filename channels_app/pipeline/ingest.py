"""Stage 1: persist what a sender gave us, then (and only then) let the listener ACK it.

Listeners hand each inbound message to a `GroupCommitter`, which writes everything that arrived
while the previous commit was in flight in one transaction: one fsync for many messages is what
keeps the ACK fast under load. This path speaks psycopg directly; the ORM is for everything else.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg
from psycopg.types.json import Jsonb

from adapters.codecs import hl7v2
from adapters.codecs.hl7v2_ack import Header

log = logging.getLogger(__name__)

ERROR_STATUS = "ERROR"
RECEIVED_STATUS = "RECEIVED"


@dataclass(slots=True)
class Inbound:
    """One message as read off the wire, with what ingest decided about it."""

    channel_id: int
    channel_version_id: int | None
    raw: bytes
    remote_addr: str
    dedupe_window_s: int
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    header: Header = field(default_factory=Header)
    message_type: str = ""
    error: hl7v2.HL7Error | Exception | None = None
    error_stage: str = ""

    @property
    def dedupe_key(self) -> str | None:
        if self.error or not self.header.control_id or self.dedupe_window_s <= 0:
            return None
        h = self.header
        return f"{h.sending_application}|{h.sending_facility}|{h.control_id}"


def read_inbound(
    raw: bytes,
    *,
    channel_id: int,
    channel_version_id: int | None,
    dedupe_window_s: int,
    remote_addr: str = "",
) -> Inbound:
    """Parse enough to answer the sender truthfully; never raises, the error rides along."""
    item = Inbound(channel_id, channel_version_id, raw, remote_addr, dedupe_window_s)
    try:
        message = hl7v2.parse(raw)
    except hl7v2.HL7Error as exc:
        item.error, item.error_stage = exc, "parse"
        item.header = Header.salvage(hl7v2.decode_bytes(raw)[0])
        item.message_type = _message_type(item.header)
        return item
    item.header = Header.of(message)
    item.message_type = message.message_type
    return item


def framing_error(raw: bytes, reason: str, **kwargs) -> Inbound:
    item = Inbound(raw=raw, **kwargs)
    item.error, item.error_stage = ValueError(reason), "framing"
    item.header = Header.salvage(raw[:4096].decode("latin-1"))
    item.message_type = _message_type(item.header)
    return item


def _message_type(header: Header) -> str:
    if header.trigger_event:
        return f"{header.message_type}^{header.trigger_event}"[:40]
    return header.message_type[:40]


@dataclass(slots=True)
class Stored:
    message_id: int | None  # None for a duplicate: nothing new was stored
    duplicate: bool = False


INSERT_MESSAGE = """
INSERT INTO channels_app_message (
    channel_id, channel_version_id, received_at, status, message_type, control_id,
    sending_application, sending_facility, remote_addr, raw, size, issues,
    error_stage, error_class, error_path, error_detail, sweep_after
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id
"""

# A key seen within its window counts one more duplicate and keeps its first sighting; an expired
# one restarts its window. Either way the returned seen_at tells the caller which case it was.
UPSERT_DEDUPE = """
INSERT INTO channels_app_dedupeentry AS d (channel_id, key, seen_at, duplicates)
SELECT c, k, s, 0 FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[]) AS t(c, k, s)
ON CONFLICT (channel_id, key) DO UPDATE SET
    duplicates = d.duplicates + (d.seen_at > EXCLUDED.seen_at - make_interval(secs => %s))::int,
    seen_at = CASE WHEN d.seen_at > EXCLUDED.seen_at - make_interval(secs => %s)
                   THEN d.seen_at ELSE EXCLUDED.seen_at END
RETURNING channel_id, key, seen_at
"""


def _row(item: Inbound) -> tuple:
    h = item.header
    error = item.error
    location = getattr(error, "location", "") if error else ""
    return (
        item.channel_id,
        item.channel_version_id,
        item.received_at,
        ERROR_STATUS if error else RECEIVED_STATUS,
        item.message_type[:40],
        h.control_id[:200],
        h.sending_application[:200],
        h.sending_facility[:200],
        item.remote_addr[:100],
        item.raw,
        len(item.raw),
        Jsonb([]),
        item.error_stage if error else "",
        type(error).__name__ if error else "",
        location[:200],
        str(error)[:4000] if error else "",
        item.received_at,
    )


async def store_batch(conn: psycopg.AsyncConnection, items: list[Inbound]) -> list[Stored]:
    """Dedupe and insert ``items`` in one transaction; results line up with ``items``."""
    results: list[Stored | None] = [None] * len(items)
    fresh: list[int] = []
    first_in_batch: dict[tuple[int, str], int] = {}
    keyed: list[int] = []
    for i, item in enumerate(items):
        key = item.dedupe_key
        if key is None:
            fresh.append(i)
        elif (item.channel_id, key) in first_in_batch:
            results[i] = Stored(None, duplicate=True)
        else:
            first_in_batch[(item.channel_id, key)] = i
            keyed.append(i)

    async with conn.transaction():
        async with conn.cursor() as cur:
            if keyed:
                # One window per statement keeps the SQL simple; channels in a batch share it
                # in practice (one listener process serves a handful of channels).
                for window in {items[i].dedupe_window_s for i in keyed}:
                    group = [i for i in keyed if items[i].dedupe_window_s == window]
                    await cur.execute(
                        UPSERT_DEDUPE,
                        (
                            [items[i].channel_id for i in group],
                            [items[i].dedupe_key for i in group],
                            [items[i].received_at for i in group],
                            window,
                            window,
                        ),
                    )
                    for channel_id, key, seen_at in await cur.fetchall():
                        i = first_in_batch[(channel_id, key)]
                        if seen_at == items[i].received_at:
                            fresh.append(i)
                        else:
                            results[i] = Stored(None, duplicate=True)
            fresh.sort()
            if fresh:
                await cur.executemany(INSERT_MESSAGE, [_row(items[i]) for i in fresh], returning=True)
                for i in fresh:
                    results[i] = Stored((await cur.fetchone())[0])
                    if not cur.nextset() and i != fresh[-1]:
                        raise RuntimeError("executemany returned fewer rows than inserted")
    return results  # type: ignore[return-value]


class GroupCommitter:
    """Collects inbound messages from every connection and commits them in batches."""

    def __init__(self, conninfo: str, *, max_batch: int = 500, on_stored=None) -> None:
        self.conninfo = conninfo
        self.max_batch = max_batch
        self.on_stored = on_stored  # called with the new message ids after each commit
        self.queue: asyncio.Queue[tuple[Inbound, asyncio.Future]] = asyncio.Queue()
        self.conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.conn:
            await self.conn.close()

    async def submit(self, item: Inbound) -> Stored:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def _connection(self) -> psycopg.AsyncConnection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        return self.conn

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            items = [item for item, _ in batch]
            try:
                conn = await self._connection()
                results = await store_batch(conn, items)
            except Exception as exc:  # the database is the source of truth: no commit, no AA
                log.error("could not store %d inbound message(s): %s", len(batch), exc)
                if self.conn is not None and not self.conn.closed:
                    await self.conn.close()
                self.conn = None
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreFailed(str(exc)))
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            if self.on_stored:
                ids = [
                    r.message_id
                    for item, r in zip(items, results, strict=True)
                    if r.message_id and not item.error
                ]
                if ids:
                    self.on_stored(ids)


class StoreFailed(Exception):
    """The message could not be committed; the sender must be told so (AE / no AA)."""
