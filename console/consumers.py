"""Websocket consumers: who may listen is decided in connect(), and again on every event."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from channels_app import events
from console import dashboard
from console.access import decide, declared, requires
from console.roles import Role

# Close codes (4000-4999 are the application's): the page tells the two apart.
REFUSED = 4403
ROLE_LOST = 4401


@requires(Role.VIEWER)
class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """The Dashboard live: a snapshot on connect, a fresh one when the statistics move (REFRESH_S
    after the first event, at most one a BUSY_GAP_S while they keep moving), each error as it
    happens, and a snapshot every TICK_S even when nothing happens (the windows slide on)."""

    REFRESH_S = 0.3
    BUSY_GAP_S = 1.0
    TICK_S = 15.0

    async def connect(self):
        if await self._refusal() is not None:
            await self.close(code=REFUSED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.view = dashboard.Scope.of({k: v[0] for k, v in query.items()})
        self.names = dashboard.Names()
        self.refresh: asyncio.Task | None = None
        self.refreshed_at = 0.0  # when the last refresh for events began (event loop time)
        self.stale = False
        self.ticker: asyncio.Task | None = None
        await self.channel_layer.group_add(events.GROUP, self.channel_name)
        await self.accept()
        await self._send_snapshot()
        self.ticker = asyncio.create_task(self._tick())

    async def disconnect(self, code):
        for task in (getattr(self, "refresh", None), getattr(self, "ticker", None)):
            if task is not None:
                task.cancel()
        await self.channel_layer.group_discard(events.GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Nothing to say back: the page only listens (a ping keeps proxies from timing out)."""
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def hub_event(self, message):
        """One event from the pipeline (channels_app.events), for everyone in the group."""
        if await self._refusal() is not None:
            await self.close(code=ROLE_LOST)
            return
        event = message["event"]
        if event["type"] == "errors":
            await self._send_errors(event["errors"])
        elif event["type"] == "stats":
            self._refresh_later()

    def _refresh_later(self):
        """One snapshot for the events of the next moments; an event that arrives while one is
        being read asks for another after it (its data may have come too late for this one)."""
        if self.refresh is None or self.refresh.done():
            self.stale = False
            self.refresh = asyncio.create_task(self._refresh_soon())
        else:
            self.stale = True

    async def _refusal(self) -> str | None:
        """The declared role checked against the user as the database has them now (a role
        taken away, or a deactivated account, ends the stream)."""
        return await database_sync_to_async(_refusal_for)(type(self), self.scope.get("user"))

    async def _send_errors(self, errors: list[events.ErrorRow]):
        rows = await database_sync_to_async(self._stream_rows)(errors)
        if rows:
            await self.send_json({"type": "errors", "errors": rows})

    def _stream_rows(self, errors: list[events.ErrorRow]) -> list[dict]:
        wanted = [e for e in errors if dashboard.in_scope(e, self.view)]
        return dashboard.stream_rows(wanted, self.names)

    async def _refresh_soon(self):
        # Events of the next moments ride along. Under steady traffic every snapshot is stale
        # before it is sent: then one a BUSY_GAP_S, never back to back (each costs the web
        # process and the database what the message path would otherwise have).
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(
                max(self.REFRESH_S, self.refreshed_at + self.BUSY_GAP_S - loop.time())
            )
            self.stale = False
            self.refreshed_at = loop.time()
            await self._send_snapshot()
            if not self.stale:
                return

    async def _tick(self):
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.TICK_S)
                await self._send_snapshot()

    async def _send_snapshot(self):
        data = await database_sync_to_async(dashboard.snapshot)(self.view, errors=False)
        await self.send_json({"type": "snapshot", "data": data})


def _refusal_for(consumer_class, user) -> str | None:
    if not getattr(user, "is_authenticated", False):
        return decide(declared(consumer_class), user)
    fresh = get_user_model().objects.filter(pk=user.pk).first()
    return decide(declared(consumer_class), fresh)
