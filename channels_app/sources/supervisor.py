"""The sources one listener process runs, kept in line with the configuration.

Every ``RECONCILE_EVERY_S`` the enabled MLLP and file channels are read; a source whose channel
appeared is started, one whose source settings changed is restarted, one whose channel was
disabled (or archived, or given another source type) is stopped, and the others are left alone
with their connections. A source that cannot start (a port taken, a bad setting) is reported
with its error and tried again every ``RETRY_AFTER_S``. What each source is doing goes to the
heartbeat table, where the console reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Subquery

from adapters.transports.mllp import ListenerLimits, ListenerOptions
from channels_app.models import Channel, ChannelVersion
from channels_app.pipeline.ingest import GroupCommitter
from channels_app.sealing import SealError
from channels_app.sources import check_source_config, opened_source_config
from channels_app.sources.file import FilePoller, PickupSpec, pickup_config
from channels_app.sources.heartbeat import Heartbeat, Report
from channels_app.sources.mllp import ListenerSpec, MLLPServer

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 1.0
RETRY_AFTER_S = 5.0
# A stopped source is reported as such for a while, so the console sees it stop at once
# instead of a "listening" row that goes stale only seconds later.
REPORT_STOPPED_S = 30.0

RUN_HERE = (Channel.SourceType.MLLP, Channel.SourceType.FILE)


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """What the configuration asks of one channel's source."""

    channel_id: int
    channel_name: str
    kind: str  # "mllp" or "file"
    # The source's own settings: when they change, the source is restarted; other channel
    # settings (name, published version, dedupe window, size limit) are taken over in place.
    settings_key: str
    spec: ListenerSpec | PickupSpec | None
    problem: str = ""  # settings the source cannot start with, reported as its error

    def describe(self) -> str:
        if isinstance(self.spec, ListenerSpec):
            return f"{self.channel_name}@{self.spec.host}:{self.spec.port}"
        if isinstance(self.spec, PickupSpec):
            return f"{self.channel_name}@{self.spec.config.directory / self.spec.config.glob}"
        return f"{self.channel_name} (not started: {self.problem})"


def planned_sources(channel_names: list[str] | None = None) -> dict[int, SourcePlan]:
    """The sources the configuration wants running now, by channel id (one query)."""
    latest = ChannelVersion.objects.filter(channel=OuterRef("pk")).order_by("-number")
    channels = Channel.objects.filter(enabled=True, source_type__in=RUN_HERE).annotate(
        version_id=Subquery(latest.values("id")[:1])
    )
    if channel_names:
        channels = channels.filter(name__in=channel_names)
    return {channel.pk: plan_for(channel) for channel in channels}


def plan_for(channel: Channel) -> SourcePlan:
    stored = channel.source_config or {}
    listen_host = settings.HUB["LISTEN_HOST"]
    # From the stored config: a sealed secret stays byte-identical until it is changed.
    settings_key = json.dumps([channel.source_type, stored, listen_host], sort_keys=True)
    plan = {
        "channel_id": channel.pk,
        "channel_name": channel.name,
        "kind": channel.source_type,
        "settings_key": settings_key,
    }
    common = {
        "channel_id": channel.pk,
        "channel_name": channel.name,
        "channel_version_id": getattr(channel, "version_id", None),
        "dedupe_window_s": channel.dedupe_window_s,
        "max_message_bytes": channel.max_message_bytes,
    }
    try:
        config = opened_source_config(channel.source_type, stored)
        check_source_config(channel.source_type, config)
        if channel.source_type == Channel.SourceType.MLLP:
            spec = ListenerSpec(
                **common,
                host=config.get("host") or listen_host,
                port=int(config["port"]),
                limits=ListenerLimits.model_validate(config),
                options=ListenerOptions.model_validate(config),
            )
        else:
            spec = PickupSpec(**common, config=pickup_config(channel.name, config))
    except (ValueError, KeyError, TypeError, SealError) as exc:
        return SourcePlan(**plan, spec=None, problem=f"bad source settings: {exc}")
    return SourcePlan(**plan, spec=spec)


def plans_of(specs, pickups) -> dict[int, SourcePlan]:
    """Plans for sources given once (tests, tools): never compared with the configuration."""
    return {
        spec.channel_id: SourcePlan(
            spec.channel_id,
            spec.channel_name,
            "mllp" if isinstance(spec, ListenerSpec) else "file",
            "given",
            spec,
        )
        for spec in [*specs, *pickups]
    }


class Source:
    """One channel's source running in this process."""

    def __init__(self, plan: SourcePlan, committer: GroupCommitter) -> None:
        self.plan = plan
        self.committer = committer
        self.state = "starting"
        self.error = plan.problem
        self.failure: BaseException | None = None
        self.tried_at = 0.0

    async def start(self) -> None:
        self.tried_at = time.monotonic()
        if self.plan.spec is None:
            self.state = "error"
            return
        try:
            await self._start()
        except (OSError, ValueError) as exc:  # a port taken, a TLS file missing
            if str(exc) != self.error:
                log.error("channel %r: source not started: %s", self.plan.channel_name, exc)
            self.state, self.error, self.failure = "error", str(exc), exc
        else:
            self.state, self.error, self.failure = "listening", "", None

    def retry_due(self) -> bool:
        due = time.monotonic() - self.tried_at >= RETRY_AFTER_S
        return self.state == "error" and self.plan.spec is not None and due

    def take_over(self, plan: SourcePlan) -> None:
        """The same source settings with other channel settings: used from the next message."""
        self.plan = plan

    async def stop(self) -> None:
        self.state = "stopped"

    def report(self) -> Report:
        return Report(self.plan.channel_id, self.state, self.error)

    async def _start(self) -> None:
        raise NotImplementedError


class MLLPSource(Source):
    server: MLLPServer | None = None

    async def _start(self) -> None:
        server = MLLPServer(self.plan.spec, self.committer)
        await server.start()
        self.server = server

    def take_over(self, plan: SourcePlan) -> None:
        super().take_over(plan)
        if self.server is not None and plan.spec is not None:
            self.server.spec = plan.spec

    async def stop(self) -> None:
        await super().stop()
        server, self.server = self.server, None
        if server is not None:
            await server.close()

    def report(self) -> Report:
        server = self.server
        if server is None or self.state != "listening":
            return super().report()
        return Report(
            self.plan.channel_id,
            "listening",
            connections=server.connections,
            last_message_at=_utc(server.last_message_at),
        )


class FileSource(Source):
    poller: FilePoller | None = None

    async def _start(self) -> None:
        self.poller = FilePoller(self.plan.spec, self.committer)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            self.poller.run(self._stop), name=f"pickup {self.plan.channel_id}"
        )

    def take_over(self, plan: SourcePlan) -> None:
        super().take_over(plan)
        if self.poller is not None and plan.spec is not None:
            self.poller.spec = plan.spec

    async def stop(self) -> None:
        await super().stop()
        poller, self.poller = self.poller, None
        if poller is not None:
            self._stop.set()  # it ends after the file in hand: committed and moved, or left
            await asyncio.gather(self._task, return_exceptions=True)

    def report(self) -> Report:
        poller = self.poller
        if poller is None or self.state != "listening":
            return super().report()
        return Report(
            self.plan.channel_id,
            "error" if poller.failure else "listening",
            poller.failure,
            last_message_at=_utc(poller.last_message_at),
        )


def _utc(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


class Supervisor:
    def __init__(
        self,
        committer: GroupCommitter,
        conninfo: str,
        on_listening: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.committer = committer
        self.on_listening = on_listening  # told the sockets held whenever they change
        self.sources: dict[int, Source] = {}
        self.stopped: dict[int, float] = {}  # channel id -> when its source stopped here
        self.heartbeat = Heartbeat(conninfo, self.reports)
        self._planner = ThreadPoolExecutor(1, thread_name_prefix="source-plans")
        self._plans_failing = False

    async def apply(self, plans: dict[int, SourcePlan], *, strict: bool = False) -> None:
        """Start, restart, stop or update each source to match ``plans``. ``strict``: a source
        that cannot start raises (sources given once, with no configuration to wait for)."""
        changed = False
        for channel_id in [c for c in self.sources if c not in plans]:
            await self._stop(channel_id)
            changed = True
        for channel_id, plan in plans.items():
            source = self.sources.get(channel_id)
            if source is not None and source.plan.settings_key != plan.settings_key:
                await self._stop(channel_id)
                source = None
            if source is None:
                source = self.sources[channel_id] = _source_for(plan, self.committer)
                self.stopped.pop(channel_id, None)
                await source.start()
                changed = True
                if strict and source.failure is not None:
                    raise source.failure
            elif source.retry_due():
                await source.start()
                changed = changed or source.state != "error"
            else:
                source.take_over(plan)
        if changed:
            self.heartbeat.poke()
            if self.on_listening:
                self.on_listening(self.listening_sockets())

    async def follow(
        self,
        stop: asyncio.Event,
        channel_names: list[str] | None = None,
        every_s: float = RECONCILE_EVERY_S,
    ) -> None:
        """Apply the configuration every ``every_s`` until ``stop`` is set."""
        while not stop.is_set():
            plans = await self._read_plans(channel_names)
            if plans is not None:
                try:
                    await self.apply(plans)
                except Exception:  # one source's bug must not end the others: next round
                    log.exception("could not apply the channel configuration (tried again)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def close(self) -> None:
        for channel_id in list(self.sources):
            await self._stop(channel_id)
        await self.heartbeat.beat()
        await self.heartbeat.close()
        await asyncio.get_running_loop().run_in_executor(self._planner, _close_connection)
        self._planner.shutdown(wait=False)

    def listening_sockets(self) -> list[str]:
        """The MLLP addresses this process is listening on now (for the System page)."""
        return sorted(
            f"{source.plan.spec.host}:{source.plan.spec.port}"
            for source in self.sources.values()
            if source.state == "listening" and isinstance(source.plan.spec, ListenerSpec)
        )

    def reports(self) -> list[Report]:
        now = time.monotonic()
        for channel_id, since in list(self.stopped.items()):
            if now - since > REPORT_STOPPED_S:
                del self.stopped[channel_id]
        running = [source.report() for source in self.sources.values()]
        return running + [Report(channel_id, "stopped") for channel_id in self.stopped]

    async def _stop(self, channel_id: int) -> None:
        source = self.sources.pop(channel_id)
        await source.stop()
        self.stopped[channel_id] = time.monotonic()
        log.info("channel %r: source stopped", source.plan.channel_name)

    async def _read_plans(self, channel_names) -> dict[int, SourcePlan] | None:
        loop = asyncio.get_running_loop()
        try:
            plans = await loop.run_in_executor(self._planner, _plans_now, channel_names)
        except Exception as exc:  # the database away: what runs keeps running
            if not self._plans_failing:
                log.warning("channel configuration not read (tried again): %s", exc)
            self._plans_failing = True
            return None
        self._plans_failing = False
        return plans


def _plans_now(channel_names) -> dict[int, SourcePlan]:
    try:
        return planned_sources(channel_names)
    except Exception:
        connection.close()  # reconnect at the next read
        raise


def _close_connection() -> None:
    connection.close()  # the planner thread's own connection


def _source_for(plan: SourcePlan, committer: GroupCommitter) -> Source:
    return (MLLPSource if plan.kind == Channel.SourceType.MLLP else FileSource)(plan, committer)
