"""A listener process's heartbeat: what each of its sources is doing, upserted every few seconds
into `SourceHeartbeat` (read by `channels_app.sources.status`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from channels_app.sources.status import HEARTBEAT_EVERY_S

log = logging.getLogger(__name__)

# Rows of processes gone this long are deleted (the console ignores them after seconds anyway).
FORGET_AFTER = "1 day"

_UPSERT = """
INSERT INTO channels_app_sourceheartbeat
    (process, channel_id, state, error, connections, last_message_at, heartbeat_at)
SELECT %s, r.channel_id, r.state, r.error, r.connections, r.last_message_at, now()
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::int[], %s::timestamptz[])
    AS r(channel_id, state, error, connections, last_message_at)
JOIN channels_app_channel c ON c.id = r.channel_id
ON CONFLICT (process, channel_id) DO UPDATE SET
    state = EXCLUDED.state, error = EXCLUDED.error, connections = EXCLUDED.connections,
    last_message_at = EXCLUDED.last_message_at, heartbeat_at = EXCLUDED.heartbeat_at
"""


@dataclass(frozen=True, slots=True)
class Report:
    channel_id: int
    state: str  # starting, listening, error, stopped
    error: str = ""
    connections: int = 0
    last_message_at: datetime | None = None


def process_name() -> str:
    """Unique per process and start: host, pid and a nonce (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Heartbeat:
    """Writes ``reports()`` every ``every_s``, and at once when ``poke()``d (a source started or
    stopped: the console should not wait for the next beat to see it)."""

    def __init__(
        self, conninfo: str, reports: Callable[[], list[Report]], every_s: float = HEARTBEAT_EVERY_S
    ) -> None:
        self.conninfo = conninfo
        self.reports = reports
        self.every_s = every_s
        self.process = process_name()
        self._conn: psycopg.AsyncConnection | None = None
        self._poked = asyncio.Event()
        self._failing = False

    def poke(self) -> None:
        self._poked.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self._forget_the_departed()
        while not stop.is_set():
            self._poked.clear()
            await self.beat()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._poked.wait())]
            await asyncio.wait(waits, timeout=self.every_s, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()

    async def beat(self, reports: list[Report] | None = None) -> None:
        """One upsert of every source's report; a failure is logged once and tried next beat."""
        reports = self.reports() if reports is None else reports
        if not reports:
            return
        columns = (
            [r.channel_id for r in reports],
            [r.state for r in reports],
            [r.error for r in reports],
            [r.connections for r in reports],
            [r.last_message_at for r in reports],
        )
        try:
            conn = await self._connection()
            await conn.execute(_UPSERT, (self.process, *columns))
            self._failing = False
        except psycopg.Error as exc:
            if not self._failing:
                log.warning("listener heartbeat not written (tried again): %s", exc)
            self._failing = True
            await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
        self._conn = None

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        return self._conn

    async def _forget_the_departed(self) -> None:
        with contextlib.suppress(psycopg.Error):
            conn = await self._connection()
            await conn.execute(
                "DELETE FROM channels_app_sourceheartbeat"
                f" WHERE heartbeat_at < now() - interval '{FORGET_AFTER}'"
            )
