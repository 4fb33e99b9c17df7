"""Run an MLLP listener for every enabled MLLP channel and a poller for every enabled file
pickup channel, all storing through one group committer (stateless: run one per host). The
sources follow the configuration: a channel created, changed, disabled or archived has its
source started, restarted or stopped within seconds, the others untouched (see
channels_app.sources.supervisor); each source's state goes to the heartbeat table."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from psycopg.conninfo import make_conninfo

from channels_app import events, process_heartbeat
from channels_app.models import Channel
from channels_app.pipeline.ingest import GroupCommitter
from channels_app.sources import opened_source_config
from channels_app.sources.file import PickupSpec, pickup_config
from channels_app.sources.mllp import ListenerSpec
from channels_app.sources.supervisor import Supervisor, planned_sources, plans_of

log = logging.getLogger(__name__)


def _enabled(source_type: str, channel_names: list[str] | None):
    """(channel, what every source spec shares) for each enabled channel of ``source_type``."""
    channels = Channel.objects.filter(enabled=True, source_type=source_type)
    if channel_names:
        channels = channels.filter(name__in=channel_names)
    for channel in channels:
        version = channel.current_version()
        yield (
            channel,
            {
                "channel_id": channel.id,
                "channel_name": channel.name,
                "channel_version_id": version.id if version else None,
                "dedupe_window_s": channel.dedupe_window_s,
                "max_message_bytes": channel.max_message_bytes,
            },
        )


def listener_specs(channel_names: list[str] | None = None) -> list[ListenerSpec]:
    return [
        ListenerSpec(
            **common,
            host=channel.source_config.get("host") or settings.HUB["LISTEN_HOST"],
            port=int(channel.source_config["port"]),
        )
        for channel, common in _enabled(Channel.SourceType.MLLP, channel_names)
    ]


def _opened(channel: Channel) -> dict:
    return opened_source_config(channel.source_type, channel.source_config)


def pickup_specs(channel_names: list[str] | None = None) -> list[PickupSpec]:
    return [
        PickupSpec(**common, config=pickup_config(channel.name, _opened(channel)))
        for channel, common in _enabled(Channel.SourceType.FILE, channel_names)
    ]


def database_conninfo() -> str:
    params = connection.get_connection_params()
    keep = {
        k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port") and v
    }
    return make_conninfo(**keep)


class Dispatcher:
    """Tells the workers about stored messages from one background thread.

    A publish costs a few hundred µs of Python holding the GIL, and each task a few ms of the
    workers' time whatever it carries, so there is at most one publish every ``linger_s``: a
    message after a quiet spell (a sparse feed) goes at once, and those that come closer together
    than that share a task. Telling by the size of the last publish instead (one id: publish the
    next at once) took a feed of 200 msg/s over four connections, committed one at a time, for a
    sparse one: a task per message, more than the workers could take, and a backlog that held
    until the top-up of late messages caught it up. The event loop never waits for Redis. If
    Redis is down the rows stay RECEIVED and the sweeper enqueues them later: nothing is lost.
    """

    def __init__(self, linger_s: float = 0.02) -> None:
        self.linger_s = linger_s
        self.pending: list[int] = []
        self.closing = False
        self.ready = threading.Condition()
        self.publisher = events.Publisher()
        self.thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self.thread.start()

    def __call__(self, ids: list[int]) -> None:
        with self.ready:
            self.pending += ids
            self.ready.notify()

    def close(self) -> None:
        """Publish what is pending, then end the thread and give its producer back (without
        waiting for it: with Redis down, the last publish takes its retries)."""
        with self.ready:
            self.closing = True
            self.ready.notify()

    def _run(self) -> None:
        next_at = 0.0
        while True:
            with self.ready:
                while not self.pending and not self.closing:
                    self.ready.wait()
                if not self.pending:
                    break
            time.sleep(max(0.0, next_at - time.monotonic()))
            with self.ready:
                ids, self.pending = self.pending, []
            next_at = time.monotonic() + self.linger_s
            try:
                self.publisher.processing(ids)
            except Exception as exc:
                log.warning(
                    "could not enqueue %d stored message(s), the sweeper will: %s", len(ids), exc
                )
        self.publisher.close()


async def serve(
    specs: list[ListenerSpec],
    conninfo: str,
    stop: asyncio.Event,
    pickups: Sequence[PickupSpec] = (),
    on_listening: Callable[[list[str]], None] | None = None,
    *,
    follow: bool = False,
    channel_names: list[str] | None = None,
) -> None:
    """Run sources until ``stop`` is set: those given (``specs``, ``pickups``), or with
    ``follow`` those of the enabled channels (``channel_names`` only, when given), following
    the configuration as it changes."""
    dispatcher = Dispatcher()
    committer = GroupCommitter(conninfo, on_stored=dispatcher)
    await committer.start()
    supervisor = Supervisor(committer, conninfo, on_listening)
    beating = asyncio.create_task(supervisor.heartbeat.run(stop), name="heartbeat")
    try:
        if follow:
            await supervisor.follow(stop, channel_names)
        else:
            await supervisor.apply(plans_of(specs, pickups), strict=True)
            sources = [source.plan.describe() for source in supervisor.sources.values()]
            print(f"listening: {', '.join(sources)}", flush=True)
            await stop.wait()
    finally:
        stop.set()  # the heartbeat ends after its beat in progress; then the last one is written
        await asyncio.gather(beating, return_exceptions=True)
        try:
            await supervisor.close()
        finally:
            # Let in-flight messages commit (and be answered) before the connection closes.
            while not committer.queue.empty():
                await asyncio.sleep(0.05)
            await committer.stop()
            dispatcher.close()


class Command(BaseCommand):
    help = (
        "Run the MLLP listeners and file pickups of all enabled MLLP and file channels, "
        "following the configuration as it changes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--channel", action="append", help="only this channel (repeatable)")

    def handle(self, *args, **options):
        names = options.get("channel")
        plans = planned_sources(names)
        if not plans:
            self.stderr.write(
                "no enabled MLLP or file channel yet: waiting for one (run seed_demo?)"
            )
        else:
            self.stdout.write(f"starting: {', '.join(p.describe() for p in plans.values())}")
        beat = process_heartbeat.start("listeners")
        conninfo = database_conninfo()
        connection.close()  # the sources write through their own async connections

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await serve(
                [],
                conninfo,
                stop,
                on_listening=beat.hold if beat else None,
                follow=True,
                channel_names=names,
            )

        asyncio.run(main())
