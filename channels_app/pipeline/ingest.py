"""Stage 1: persist what a sender gave us, then (and only then) let the source answer it.

Every source (`channels_app.sources`: MLLP, file pickup, HTTP) reads what it received into an
`Inbound` (`read_inbound`, `framing_error`, or its own reader for other formats) and stores it
through the one entry point, `store_batch` (`store_now` on a synchronous cursor): dedupe and
insert in one statement, a `Stored` per message. The socket sources call it through a
`GroupCommitter`, which writes everything that arrived while the previous commit was in flight in
one transaction (one fsync for many messages is what keeps the ACK fast under load); HTTP calls
`store_now` with the request's own connection, inside its transaction. This path speaks SQL directly; the ORM is for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from adapters.codecs import exact_json, hl7v2
from adapters.codecs.hl7v2_ack import Header
from adapters.mapping.convert import unmapped
from channels_app import events
from channels_app.sealing import seal_many

log = logging.getLogger(__name__)

ERROR_STATUS = "ERROR"
RECEIVED_STATUS = "RECEIVED"
HL7_V2 = "x-application/hl7-v2+er7"


NO_HEADER = Header()  # frozen: one instance serves every Inbound until its header is read


@dataclass(slots=True)
class Inbound:
    """One message as read off the wire, with what ingest decided about it."""

    channel_id: int
    channel_version_id: int | None
    raw: bytes
    remote_addr: str
    dedupe_window_s: int
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    header: Header = NO_HEADER
    message_type: str = ""
    error: hl7v2.HL7Error | Exception | None = None
    error_stage: str = ""
    content_type: str = HL7_V2

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
    item.message_type = _message_type(item.header)  # as message.message_type, read once
    # A type without a map can never be converted: stored with its error and answered AR now,
    # not acknowledged AA and failed later where the sender cannot see it.
    if unsupported := unmapped(message):
        item.error, item.error_stage = unsupported, "map"
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


# One statement per batch: dedupe and insert together, atomic without an explicit transaction.
# A key seen within its channel's window counts one more duplicate and keeps its first sighting;
# an expired key restarts its window. Rows whose returned seen_at is their own are fresh.
# The batch travels as one JSON parameter (`_Batch.param`): encoding it costs the listener a few
# µs for a lone message, where an array per column cost 70 µs (200 on a loaded machine), paid
# before that message's ACK. The server reads JSON for some 8 µs more a row than binary arrays,
# so a large batch costs about the same in total; the saving is on the one-sender ACK path.
ON_CONFLICT = """
    ON CONFLICT (channel_id, key) DO UPDATE SET
        duplicates = d.duplicates + (d.seen_at > EXCLUDED.seen_at - (
            SELECT make_interval(secs => c.dedupe_window_s) FROM channels_app_channel c
            WHERE c.id = d.channel_id))::int,
        seen_at = CASE WHEN d.seen_at > EXCLUDED.seen_at - (
            SELECT make_interval(secs => c.dedupe_window_s) FROM channels_app_channel c
            WHERE c.id = d.channel_id) THEN d.seen_at ELSE EXCLUDED.seen_at END
"""
MESSAGE_COLUMNS = """
        channel_id, channel_version_id, received_at, status, message_type, control_id,
        sending_application, sending_facility, remote_addr, raw, size, issues,
        error_stage, error_class, error_path, error_detail, sweep_after, content_type
"""
STORE_BATCH = f"""
WITH incoming AS (
    SELECT t.*, t.ordinality AS ord FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS (
        channel_id bigint, version_id bigint, received_at timestamptz, status text,
        message_type text, control_id text, sending_application text, sending_facility text,
        remote_addr text, raw bytea, error_stage text, error_class text, error_path text,
        error_detail text, dedupe_key text, size int, content_type text
    )) WITH ORDINALITY AS t
), seen AS (
    INSERT INTO channels_app_dedupeentry AS d (channel_id, key, seen_at, duplicates)
    SELECT channel_id, dedupe_key, received_at, 0 FROM incoming WHERE dedupe_key IS NOT NULL
    {ON_CONFLICT}
    RETURNING channel_id, key, seen_at
), fresh AS (
    SELECT i.* FROM incoming i
    LEFT JOIN seen ON seen.channel_id = i.channel_id AND seen.key = i.dedupe_key
    WHERE i.dedupe_key IS NULL OR seen.seen_at = i.received_at
), stored AS (
    INSERT INTO channels_app_message ({MESSAGE_COLUMNS})
    SELECT channel_id, version_id, received_at, status, message_type, control_id,
           sending_application, sending_facility, remote_addr, raw, size, '[]'::jsonb,
           error_stage, error_class, error_path, error_detail, received_at, content_type
    FROM fresh ORDER BY ord
    RETURNING id
)
SELECT (SELECT array_agg(ord ORDER BY ord) FROM fresh), (SELECT array_agg(id ORDER BY id) FROM stored)
"""

# The lone message (one sender waiting for each ACK: most hospital feeds) is stored by the same
# dedupe and insert with the row's values as plain parameters: no JSON to read, nothing to sort or
# aggregate, about 90 µs sooner than a batch of one. Returns its id, or no row for a duplicate.
STORE_ONE = f"""
WITH seen AS (
    INSERT INTO channels_app_dedupeentry AS d (channel_id, key, seen_at, duplicates)
    SELECT %(channel_id)s::bigint, %(dedupe_key)s::varchar, %(received_at)s::timestamptz, 0
    WHERE %(dedupe_key)s::varchar IS NOT NULL
    {ON_CONFLICT}
    RETURNING seen_at
)
INSERT INTO channels_app_message ({MESSAGE_COLUMNS})
SELECT %(channel_id)s::bigint, %(version_id)s::bigint, %(received_at)s::timestamptz,
       %(status)s::text, %(message_type)s::text, %(control_id)s::text,
       %(sending_application)s::text, %(sending_facility)s::text, %(remote_addr)s::text,
       %(raw)s::text::bytea, %(size)s::int, '[]'::jsonb, %(error_stage)s::text,
       %(error_class)s::text, %(error_path)s::text, %(error_detail)s::text,
       %(received_at)s::timestamptz, %(content_type)s::text
WHERE NOT EXISTS (SELECT FROM seen WHERE seen.seen_at <> %(received_at)s::timestamptz)
RETURNING id
"""


def _row(item: Inbound, key: str | None, raw: bytes) -> dict:
    """The row for ``item``, as `STORE_BATCH` reads it from JSON (and `STORE_ONE` takes it as
    parameters); ``raw`` is its body as stored (sealed at rest when HUB_ENCRYPTION_KEYS is set),
    in bytea's hex input form."""
    h, error = item.header, item.error
    return {
        "channel_id": item.channel_id,
        "version_id": item.channel_version_id,
        "received_at": item.received_at.isoformat(),
        "status": ERROR_STATUS if error else RECEIVED_STATUS,
        "message_type": _text(item.message_type, 40),
        "control_id": _text(h.control_id, 200),
        "sending_application": _text(h.sending_application, 200),
        "sending_facility": _text(h.sending_facility, 200),
        "remote_addr": item.remote_addr[:100],
        "raw": "\\x" + raw.hex(),
        "error_stage": item.error_stage if error else "",
        "error_class": type(error).__name__ if error else "",
        "error_path": _text(str(getattr(error, "location", "") or ""), 200) if error else "",
        "error_detail": _text(str(error), 4000) if error else "",
        "dedupe_key": key,
        "size": len(item.raw),
        "content_type": item.content_type[:60],
    }


def _text(value: str, limit: int) -> str:
    """A sender's text as a PostgreSQL text column takes it: a NUL (which no text column
    holds) written as ``\\x00``, the rest kept. The body itself is stored as sent."""
    return (value.replace("\x00", "\\x00") if "\x00" in value else value)[:limit]


async def store_batch(conn: psycopg.AsyncConnection, items: list[Inbound]) -> list[Stored]:
    """Dedupe and insert ``items`` in one statement over a psycopg ``AsyncConnection`` (the
    socket sources, through `GroupCommitter`); results line up with ``items``. `store_now` is
    the same on a synchronous cursor."""
    batch = _Batch(items)
    if not batch.rows:
        return batch.results()
    if len(batch.rows) == 1:
        cur = await conn.execute(STORE_ONE, batch.rows[0])
        return batch.result_of_one(await cur.fetchone())
    cur = await conn.execute(STORE_BATCH, (batch.param(),))
    return batch.results(*await cur.fetchone())


def store_now(cursor, items: list[Inbound]) -> list[Stored]:
    """`store_batch` on a synchronous cursor (Django's), inside the caller's transaction."""
    batch = _Batch(items)
    if not batch.rows:
        return batch.results()
    if len(batch.rows) == 1:
        cursor.execute(STORE_ONE, batch.rows[0])
        return batch.result_of_one(cursor.fetchone())
    cursor.execute(STORE_BATCH, (batch.param(),))
    return batch.results(*cursor.fetchone())


class _Batch:
    """The rows a batch sends (a key repeated inside the batch is a duplicate at once) and how
    the database's answer maps back onto the items."""

    def __init__(self, items: list[Inbound]) -> None:
        self.stored: list[Stored | None] = [None] * len(items)
        self.rows: list[dict] = []
        self.sent: list[int] = []  # positions in ``items`` that go to the database
        keys_in_batch: set[tuple[int, str]] = set()
        keys: list[str | None] = []
        for i, item in enumerate(items):
            key = item.dedupe_key
            if key is not None:
                if (item.channel_id, key) in keys_in_batch:
                    self.stored[i] = Stored(None, duplicate=True)  # repeated in this very batch
                    continue
                keys_in_batch.add((item.channel_id, key))
            keys.append(key)
            self.sent.append(i)
        sent = [items[i] for i in self.sent]
        raws = seal_many([item.raw for item in sent])
        self.rows = [_row(item, key, raw) for item, key, raw in zip(sent, keys, raws, strict=True)]

    def param(self) -> str:
        return exact_json.encode(self.rows).decode()  # msgspec: a quarter of json.dumps's time

    def result_of_one(self, row: tuple | None) -> list[Stored]:
        """The results for `STORE_ONE`'s answer: the new id, or no row for a duplicate."""
        return self.results([1], [row[0]]) if row else self.results([], [])

    def results(self, fresh_ords=None, ids=None) -> list[Stored]:
        fresh_ords, ids = fresh_ords or [], ids or []
        if len(fresh_ords) != len(ids):
            raise StoreFailed(f"stored {len(ids)} of {len(fresh_ords)} fresh messages")
        # Ids come from one sequence in insertion order, which follows ordinality.
        stored_at = dict(zip(fresh_ords, ids, strict=True))
        for ordinal, i in enumerate(self.sent, start=1):
            message_id = stored_at.get(ordinal)
            self.stored[i] = Stored(message_id) if message_id else Stored(None, duplicate=True)
        return self.stored  # type: ignore[return-value]


class GroupCommitter:
    """Collects inbound messages from every connection and commits them in batches.

    A batch is whatever arrived while the previous commit was in flight: a lone message is
    committed at once, a busy listener commits many with one round trip and one fsync.
    """

    # Statistics are a signal: under load they go to the reporter a few times a second, not
    # once a commit (each report wakes a thread that competes with the ACKs for the GIL).
    REPORT_EVERY_S = 0.1

    def __init__(self, conninfo: str, *, max_batch: int = 500, on_stored=None) -> None:
        self.conninfo = conninfo
        self.max_batch = max_batch
        self.on_stored = on_stored  # called with the new message ids after each commit
        self.queue: asyncio.Queue[tuple[Inbound, asyncio.Future]] = asyncio.Queue()
        self.conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task | None = None
        self._unreported: tuple[list[Inbound], list] = ([], [])
        self._report_due: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._report()
        if self.conn:
            await self.conn.close()

    async def submit(self, item: Inbound) -> Stored:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((item, future))
        return await future

    async def _connection(self) -> psycopg.AsyncConnection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        return self.conn

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            items = [item for item, _ in batch]
            results = await self._store(items)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, StoreFailed):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            # The senders woken above run first (the loop's ready queue is FIFO): their ACKs
            # are written before the workers and the statistics are told.
            loop.call_soon(self._committed, items, results)

    def _committed(self, items: list[Inbound], results: list) -> None:
        if self.on_stored:
            ids = [
                r.message_id
                for item, r in zip(items, results, strict=True)
                if isinstance(r, Stored) and r.message_id and not item.error
            ]
            if ids:
                self.on_stored(ids)
        self._unreported[0].extend(items)
        self._unreported[1].extend(results)
        if self._report_due is None:
            loop = asyncio.get_running_loop()
            self._report_due = loop.call_later(self.REPORT_EVERY_S, self._report)

    def _report(self) -> None:
        if self._report_due is not None:
            self._report_due.cancel()
            self._report_due = None
        items, results = self._unreported
        if items:
            self._unreported = ([], [])
            events.received(items, results)

    async def _store(self, items: list[Inbound]) -> list[Stored | StoreFailed]:
        """Store a batch; if the database refuses its data, store the halves apart, so one
        unstorable message is refused alone instead of failing every sender in its batch."""
        try:
            return await store_batch(await self._connection(), items)
        # Bad data in some row (or text no JSON can carry, a lone surrogate): the server is fine.
        except (psycopg.errors.DataError, UnicodeEncodeError) as exc:
            if len(items) == 1:
                log.error("could not store an inbound message: %s", exc)
                return [StoreFailed(f"the message could not be stored: {exc}")]
            half = len(items) // 2
            return await self._store(items[:half]) + await self._store(items[half:])
        except Exception as exc:  # the database is the source of truth: no commit, no AA
            log.error("could not store %d inbound message(s): %s", len(items), exc)
            if self.conn is not None and not self.conn.closed:
                await self.conn.close()
            self.conn = None
            return [StoreFailed(str(exc)) for _ in items]


class StoreFailed(Exception):
    """The message could not be committed; the sender must be told so (AE / no AA)."""
