"""Asyncio MLLP listeners: one server per enabled MLLP channel, all sharing one group committer.

Listeners are stateless: run as many as the load needs behind a TCP load balancer. Ingest is
idempotent per (sender, MSH-10), so a sender that reconnects elsewhere loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from adapters.codecs.hl7v2_ack import Header, build_ack
from adapters.transports.mllp import FrameReader, FramingError, frame
from channels_app.pipeline.ingest import (
    GroupCommitter,
    Inbound,
    StoreFailed,
    framing_error,
    read_inbound,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    channel_id: int
    channel_name: str
    channel_version_id: int | None
    host: str
    port: int
    dedupe_window_s: int
    max_message_bytes: int
    idle_timeout_s: float = 600.0


def ack_for(item: Inbound, message_id: int | None, *, failure: str | None = None) -> bytes:
    """The truthful answer: AA only for a committed (or already committed) message."""
    control_id = f"HUB{message_id}" if message_id else f"HUB{secrets.token_hex(6)}"
    header = item.header or Header()
    if failure:
        text = f"message not stored, send again: {failure}"
        ack = build_ack(header, "AE", control_id=control_id, text=text)
    elif item.error is None:
        ack = build_ack(header, "AA", control_id=control_id)
    else:
        error = item.error
        location = None
        if getattr(error, "segment", None):
            location = (error.segment, error.segment_index, error.field)
        # AR: we cannot read the message at all (framing, MSH); AE: its content is wrong.
        reading_failed = item.error_stage == "framing" or getattr(error, "segment_index", 1) in (
            1,
            None,
        )
        reason = getattr(error, "bare_reason", None) or str(error)
        ack = build_ack(
            header,
            "AR" if reading_failed else "AE",
            control_id=control_id,
            text=reason,
            error_code="internal" if reading_failed else "segment_sequence",
            error_location=location,
        )
    return frame(ack.encode(_charset(item), errors="replace"))


def _charset(item: Inbound) -> str:
    try:
        item.raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


class MLLPServer:
    def __init__(self, spec: ListenerSpec, committer: GroupCommitter) -> None:
        self.spec = spec
        self.committer = committer
        self.server: asyncio.base_events.Server | None = None
        self.connections = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.spec.host, self.spec.port)
        log.info(
            "channel %r listening for MLLP on %s:%s",
            self.spec.channel_name,
            self.spec.host,
            self.spec.port,
        )

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if peer else ""
        frames = FrameReader(self.spec.max_message_bytes)
        self.connections += 1
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), self.spec.idle_timeout_s)
                except TimeoutError:
                    break
                if not data:
                    break
                for item in frames.feed(data):
                    await self._answer(item, remote, writer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    async def _answer(self, received: bytes | FramingError, remote: str, writer) -> None:
        common = {
            "channel_id": self.spec.channel_id,
            "channel_version_id": self.spec.channel_version_id,
            "dedupe_window_s": self.spec.dedupe_window_s,
            "remote_addr": remote,
        }
        if isinstance(received, FramingError):
            item = framing_error(received.data, str(received), **common)
        else:
            item = read_inbound(received, **common)
        try:
            stored = await self.committer.submit(item)
        except StoreFailed as exc:
            writer.write(ack_for(item, None, failure=str(exc)[:120]))
            return
        writer.write(ack_for(item, stored.message_id))
