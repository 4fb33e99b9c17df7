"""Asyncio MLLP listeners: one server per enabled MLLP channel, all sharing one group committer.

Listeners are stateless: run as many as the load needs behind a TCP load balancer. Ingest is
idempotent per (sender, MSH-10), so a sender that reconnects elsewhere loses nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import ssl
import time
from collections import Counter
from dataclasses import dataclass

import psycopg
from pydantic import ValidationError

from adapters.codecs.hl7v2 import DEFAULT_ENCODING, Encoding, escape
from adapters.codecs.hl7v2_ack import AckMode, Header, Verdict, ack_code, build_ack
from adapters.mapping.result import UnsupportedMessageType
from adapters.transports.mllp import (
    COMMIT_ACK,
    COMMIT_ACK_BLOCK,
    COMMIT_NAK,
    COMMIT_NAK_BLOCK,
    FrameReader,
    FramingError,
    ListenerLimits,
    ListenerOptions,
    frame,
)
from channels_app.pipeline.ingest import (
    GroupCommitter,
    Inbound,
    StoreFailed,
    framing_error,
    read_inbound,
)
from channels_app.sealing import SealError, open_secrets, schema_secrets

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
    # None: the channel's own, read from its source_config when the listener starts.
    limits: ListenerLimits | None = None
    options: ListenerOptions | None = None


def ack_for(
    item: Inbound,
    message_id: int | None,
    *,
    failure: str | None = None,
    mode: AckMode = "original",
) -> bytes:
    """The truthful answer: AA (CA) only for a committed (or already committed) message.

    Empty when ``mode`` is ``enhanced`` and the message's MSH-15 asks for no answer to this
    outcome (see `ack_code`).
    """
    try:
        ack = _ack_text(item, message_id, failure, _safe_header(item.header or Header()), mode)
    except Exception as exc:  # a header no ACK can be built on still gets its answer
        log.warning("ACK built on default MSH fields (%s)", type(exc).__name__)
        ack = _ack_text(item, message_id, failure, Header(), mode)
    if not ack:
        return b""
    data = ack.encode(_charset(item), errors="replace")
    # Echoed fields must not end or open the ACK's own frame.
    return frame(data.replace(b"\x1c", b"?").replace(b"\x0b", b"?"))


def _printable_encoding(enc: Encoding) -> bool:
    return _printable(enc.field + enc.msh2)


@functools.lru_cache(maxsize=64)
def _printable(separators: str) -> bool:
    return all(33 <= ord(c) < 127 and not c.isalnum() for c in separators)


@functools.lru_cache(maxsize=64)
def _specials(separators: str) -> frozenset[str]:
    """What `escape` replaces in a value written with these separators."""
    return frozenset(separators + "\r\n")


def _safe_header(header: Header) -> Header:
    """The header with what the ACK writes into MSH made safe: values it unescaped (MSH-9.2, 11,
    12) escaped again, and raw ones (MSH-3 to 6, echoed as sent) with any field separator
    escaped, so a sender's \\X0D\\ or a header read with fallback separators cannot split the
    ACK's own segment or shift its fields."""
    if _printable_encoding(header.enc) and _safe_as_is(header):
        return header  # the usual header: nothing to escape, nothing to copy
    if not _printable_encoding(header.enc):
        # Separators no reader accepts (a tab, a NUL, a letter) answered in the default ones, with
        # what was read under them as plain data.
        header = dataclasses.replace(
            header,
            enc=DEFAULT_ENCODING,
            sending_application=escape(header.sending_application),
            sending_facility=escape(header.sending_facility),
            receiving_application=escape(header.receiving_application),
            receiving_facility=escape(header.receiving_facility),
        )
    enc = header.enc
    field_sep = f"{enc.escape}F{enc.escape}"

    def raw(value: str) -> str:
        return value.replace(enc.field, field_sep)

    return dataclasses.replace(
        header,
        sending_application=raw(header.sending_application),
        sending_facility=raw(header.sending_facility),
        receiving_application=raw(header.receiving_application),
        receiving_facility=raw(header.receiving_facility),
        trigger_event=escape(header.trigger_event, enc),
        processing_id=escape(header.processing_id, enc),
        version=escape(header.version, enc),
    )


def _safe_as_is(header: Header) -> bool:
    enc = header.enc
    specials = _specials(enc.field + enc.msh2)
    raw = (
        header.sending_application
        + header.sending_facility
        + header.receiving_application
        + header.receiving_facility
    )
    unescaped = header.trigger_event + header.processing_id + header.version
    return enc.field not in raw and specials.isdisjoint(unescaped)


def _ack_text(
    item: Inbound, message_id: int | None, failure: str | None, header: Header, mode: AckMode
) -> str:
    verdict = _verdict(item, failure)
    code = ack_code(verdict, header, mode, committed=not failure)
    if not code:
        return ""
    control_id = f"HUB{message_id}" if message_id else f"HUB{secrets.token_hex(6)}"
    if failure:
        text = f"message not stored, send again: {failure}"
        ack = build_ack(header, code, control_id=control_id, text=text)
    elif verdict == "accept":
        ack = build_ack(header, code, control_id=control_id)
    else:
        error = item.error
        location = None
        if getattr(error, "segment", None):
            location = (error.segment, getattr(error, "segment_index", 1), _field(error.field))
        reason = getattr(error, "bare_reason", None) or str(error)
        ack = build_ack(
            header,
            code,
            control_id=control_id,
            text=reason,
            error_code=_error_code(item, verdict),
            error_location=location,
        )
    return ack


def _field(field) -> int | None:
    """A field's number: a parse error gives it as such, a map error as its path ("MSH-9")."""
    if isinstance(field, int) or field is None:
        return field
    number = str(field).rpartition("-")[2]
    return int(number) if number.isdigit() else None


def _error_code(item: Inbound, verdict: Verdict) -> str:
    """ERR-3: a type without a map is the standard's 200; a message not read at all, 207."""
    if isinstance(item.error, UnsupportedMessageType):
        return "unsupported_message_type"
    return "internal" if verdict == "reject" else "segment_sequence"


def _verdict(item: Inbound, failure: str | None) -> Verdict:
    if failure:
        return "error"  # not stored: the sender should send it again
    if item.error is None:
        return "accept"
    # Reject: we cannot read the message at all (framing, MSH); error: its content is wrong.
    if item.error_stage == "framing" or getattr(item.error, "segment_index", 1) in (1, None):
        return "reject"
    return "error"


def _charset(item: Inbound) -> str:
    if item.raw.isascii():
        return "utf-8"
    try:
        item.raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def _secrets() -> dict[str, str]:
    # What channels_app.sources.source_secrets("mllp") names (that package imports this module).
    return schema_secrets(ListenerLimits, ListenerOptions)


async def channel_limits(conninfo: str, spec: ListenerSpec) -> ListenerLimits:
    """The channel's listener limits, from its source_config; refuse to start on a bad one."""
    return (await channel_source(conninfo, spec))[0]


async def channel_source(
    conninfo: str, spec: ListenerSpec
) -> tuple[ListenerLimits, ListenerOptions]:
    """The channel's listener limits and options, from its source_config; refuse to start on a
    bad one, naming the channel."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT source_config FROM channels_app_channel WHERE id = %s", (spec.channel_id,)
        )
        row = await cur.fetchone()
    try:
        config = open_secrets((row[0] if row else None) or {}, _secrets())
    except SealError as exc:
        raise ValueError(f"channel {spec.channel_name!r}: {exc}") from exc
    try:
        limits = ListenerLimits.model_validate(config)
    except ValidationError as exc:
        raise ValueError(f"channel {spec.channel_name!r}: bad MLLP listener limits: {exc}") from exc
    try:
        options = ListenerOptions.model_validate(config)
    except ValidationError as exc:
        raise ValueError(
            f"channel {spec.channel_name!r}: bad MLLP listener options: {exc}"
        ) from exc
    return limits, options


@dataclass(eq=False, slots=True)
class _Connection:
    """One peer's connection, as far as making room for another is concerned."""

    address: str
    remote: str
    writer: asyncio.StreamWriter
    last_data_at: float
    framed: bool = False  # has started a frame: a sender, not (yet) a stray connection
    idle: bool = False  # waiting between frames: closing it loses nothing
    released: bool = False


class MLLPServer:
    def __init__(self, spec: ListenerSpec, committer: GroupCommitter) -> None:
        self.spec = spec
        self.committer = committer
        self.limits = spec.limits or ListenerLimits()
        self.options = spec.options or ListenerOptions()
        self.tls: ssl.SSLContext | None = None
        self.server: asyncio.base_events.Server | None = None
        self.connections = 0
        self.per_ip: Counter[str] = Counter()
        self.refused = 0
        self.evicted = 0
        self.last_message_at: float | None = None  # time.time() of the last frame answered
        self._refusals = _RefusalLog(spec.channel_name, "refused MLLP connection")
        self._evictions = _RefusalLog(spec.channel_name, "closed an idle MLLP connection")
        self._open: dict[asyncio.Task, _Connection] = {}
        self._handlers: set[asyncio.Task] = set()
        self._waiting: set[asyncio.Task] = set()  # handlers between frames, safe to cancel
        self.closing = False

    async def start(self) -> None:
        if self.spec.limits is None or self.spec.options is None:
            limits, options = await channel_source(self.committer.conninfo, self.spec)
            self.limits = self.spec.limits or limits
            self.options = self.spec.options or options
        if self.options.tls is not None:
            try:
                self.tls = self.options.tls.server_context()
            except (OSError, ValueError) as exc:  # a missing file, a key that does not match
                raise ValueError(f"channel {self.spec.channel_name!r}: bad TLS: {exc}") from exc
        self.server = await asyncio.start_server(self._handle, self.spec.host, self.spec.port)
        log.info(
            "channel %r listening for MLLP%s on %s:%s (%s, ack_mode %s, MLLP release %s)",
            self.spec.channel_name,
            " over TLS" if self.tls else "",
            self.spec.host,
            self.spec.port,
            self.limits,
            self.options.ack_mode,
            self.options.mllp_release,
        )

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop accepting, end connections waiting for a frame, let the others answer first."""
        self.closing = True
        if self.server:
            self.server.close()
        for task in self._waiting:
            task.cancel()
        if self._handlers:
            _, late = await asyncio.wait(self._handlers, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self.server:
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if peer else ""
        address = peer[0] if peer else ""
        why_not = self._make_room(address)
        if why_not:
            self.refused += 1
            self._refusals.note(remote, why_not)
            writer.transport.abort()  # at once, holding nothing: no lingering close
            return
        loop = asyncio.get_running_loop()
        conn = _Connection(address, remote, writer, last_data_at=loop.time())
        self.connections += 1
        self.per_ip[address] += 1
        self._open[asyncio.current_task()] = conn
        self._handlers.add(asyncio.current_task())
        try:
            # Nothing awaited before this: the handshake must see the peer's very first bytes.
            if self.tls is not None and not await self._handshake(writer, remote):
                return
            await self._serve(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            if not self.closing:
                raise
            # Ended by close() between frames: nothing was in flight; the task ends here.
        except TimeoutError:  # only writes wait outside the read deadlines
            log.info(
                "channel %r: closing MLLP connection from %s: it does not read its ACKs",
                self.spec.channel_name,
                remote,
            )
        except Exception as exc:  # one connection's failure must not reach the others
            log.error(
                "channel %r: MLLP connection from %s failed: %s",
                self.spec.channel_name,
                remote,
                type(exc).__name__,
            )
        finally:
            self._release(asyncio.current_task())
            self._handlers.discard(asyncio.current_task())
            writer.close()

    def _release(self, task: asyncio.Task) -> None:
        """Give back a connection's slot (once: an evicted one gives it back at eviction)."""
        conn = self._open.pop(task, None)
        if conn is None:
            return
        self.connections -= 1
        self.per_ip[conn.address] -= 1
        if not self.per_ip[conn.address]:
            del self.per_ip[conn.address]

    async def _handshake(self, writer: asyncio.StreamWriter, remote: str) -> bool:
        """TLS after the allow-list and slot checks, so a refused peer costs no handshake.

        A failed handshake (plain text on a TLS port, an untrusted or missing client
        certificate, a peer that stalls) is logged as a refusal and the connection dropped.
        """
        limits = self.limits
        timeout = min(limits.preframe_timeout_s, limits.frame_timeout_s, limits.idle_timeout_s)
        try:
            await writer.start_tls(self.tls, ssl_handshake_timeout=timeout)
        except (OSError, TimeoutError, ConnectionError) as exc:  # ssl.SSLError is an OSError
            self.refused += 1
            reason = getattr(exc, "reason", None) or type(exc).__name__
            self._refusals.note(remote, f"TLS handshake failed ({reason})")
            writer.transport.abort()
            return False
        return True

    def _make_room(self, address: str) -> str:
        """Why a connection from ``address`` is refused, or "" once there is a slot for it: at a
        limit, an idle connection (from that address, for its own limit) is closed first."""
        limits = self.limits
        if not limits.allows(address):
            return "not in the channel's allowed_ips"
        per_ip = limits.max_connections_per_ip
        if per_ip is not None and self.per_ip[address] >= per_ip and not self._evict(address):
            return f"{per_ip} connections open from it (max_connections_per_ip {per_ip})"
        if self.connections >= limits.max_connections and not self._evict(None):
            return f"{self.connections} connections open (max_connections {limits.max_connections})"
        return ""

    def _evict(self, address: str | None) -> bool:
        """Close the idle connection that matters least: one that never started a frame before
        one of a sender, from the address holding the most slots, idle the longest. A sender is
        idle once it has waited ``preframe_timeout_s`` for its next frame: one that is sending
        is never closed to make room."""
        sender_idle_since = asyncio.get_running_loop().time() - self.limits.preframe_timeout_s
        idle = [
            (task, conn)
            for task, conn in self._open.items()
            if conn.idle
            and (address is None or conn.address == address)
            and (not conn.framed or conn.last_data_at <= sender_idle_since)
        ]
        if not idle:
            return False
        task, victim = min(
            idle, key=lambda tc: (tc[1].framed, -self.per_ip[tc[1].address], tc[1].last_data_at)
        )
        self._release(task)
        victim.writer.transport.abort()  # its read sees the end at once; nothing was in flight
        self.evicted += 1
        self._evictions.note(victim.remote, "to make room for a new one")
        return True

    async def _serve(self, reader, writer, conn: _Connection) -> None:
        """Read frames and answer each, within the limits: a connection that starts no frame
        within ``preframe_timeout_s`` of opening, then sends no complete frame for
        ``idle_timeout_s``, or leaves a frame open for ``frame_timeout_s``, is closed."""
        limits, loop, remote = self.limits, asyncio.get_running_loop(), conn.remote
        frames = FrameReader(self.spec.max_message_bytes)
        opened_at = last_frame_at = loop.time()
        frame_since: float | None = None
        while True:
            idle_deadline, before_first = self._idle_deadline(conn, opened_at, last_frame_at)
            deadline = idle_deadline
            if frame_since is not None:
                deadline = min(deadline, frame_since + limits.frame_timeout_s)
            self._waiting.add(asyncio.current_task())
            conn.idle = not frames.holding
            try:
                async with asyncio.timeout_at(deadline):  # no task per read, unlike wait_for
                    data = await reader.read(65536)
            except TimeoutError:
                if frame_since is not None and deadline < idle_deadline:
                    reason = f"frame not completed within {limits.frame_timeout_s:g} s"
                elif before_first:
                    reason = f"no frame started within {limits.preframe_timeout_s:g} s"
                else:
                    reason = f"no complete frame for {limits.idle_timeout_s:g} s"
                log.info(
                    "channel %r: closing MLLP connection from %s: %s",
                    self.spec.channel_name,
                    remote,
                    reason,
                )
                await self._give_up(frames, reason, remote, writer)
                return
            finally:
                self._waiting.discard(asyncio.current_task())
                conn.idle = False
            if not data:
                await self._give_up(frames, "connection closed inside a frame", remote, writer)
                return
            conn.last_data_at = loop.time()
            items = frames.feed(data)
            for item in items:
                await self._answer(item, remote, writer)
            if any(not getattr(item, "outside", False) for item in items):
                last_frame_at = loop.time()  # bytes outside frames, answered or not, are no frame
                conn.framed = True
                self.last_message_at = time.time()
            conn.framed = conn.framed or frames.holding
            if not frames.holding:
                frame_since = None
            elif items or frame_since is None:
                frame_since = loop.time()
            await _drain(writer, limits.idle_timeout_s)

    def _idle_deadline(
        self, conn: _Connection, opened_at: float, last_frame_at: float
    ) -> tuple[float, bool]:
        """When a connection waiting for its next frame is closed, and whether that is for not
        starting a first frame (the reason is worded only when it is closed: this runs per read)."""
        idle = last_frame_at + self.limits.idle_timeout_s
        if conn.framed:
            return idle, False
        preframe = opened_at + self.limits.preframe_timeout_s
        return (preframe, True) if preframe < idle else (idle, False)

    async def _give_up(self, frames: FrameReader, reason: str, remote: str, writer) -> None:
        """The frame in progress is stored with its reason and refused; the peer may still read."""
        partial = frames.flush(reason)
        if partial is None:
            return
        await self._answer(partial, remote, writer)
        await asyncio.wait_for(writer.drain(), min(5.0, self.limits.idle_timeout_s))

    def _inbound(self, received: bytes | FramingError, remote: str) -> Inbound:
        common = {
            "channel_id": self.spec.channel_id,
            "channel_version_id": self.spec.channel_version_id,
            "dedupe_window_s": self.spec.dedupe_window_s,
            "remote_addr": remote,
        }
        try:
            if isinstance(received, FramingError):
                item = framing_error(received.data, str(received), **common)
            else:
                item = read_inbound(received, **common)
        except Exception as exc:  # a codec bug: still stored and refused, never a dropped frame
            log.error(
                "channel %r: the HL7 reader failed on a message from %s: %s",
                self.spec.channel_name,
                remote,
                type(exc).__name__,
            )
            raw = received.data if isinstance(received, FramingError) else received
            item = Inbound(raw=raw, **common)
            item.error = HL7ReaderFailed(f"the message could not be read ({type(exc).__name__})")
            item.error_stage = "framing" if isinstance(received, FramingError) else "parse"
        return storable(item)

    async def _answer(self, received: bytes | FramingError, remote: str, writer) -> None:
        release2 = self.options.mllp_release == 2
        if release2 and received in (COMMIT_ACK, COMMIT_NAK):
            return  # the peer's commit acknowledgement of an ACK we sent: nothing to store
        item = self._inbound(received, remote)
        mode = self.options.ack_mode
        try:
            stored = await self.committer.submit(item)
        except StoreFailed as exc:
            if release2:
                writer.write(COMMIT_NAK_BLOCK)
            writer.write(ack_for(item, None, failure=str(exc)[:120], mode=mode))
            return
        if release2:
            # A frame cut short or oversize was stored only in part: not committed as sent.
            whole = item.error_stage != "framing"
            writer.write(COMMIT_ACK_BLOCK if whole else COMMIT_NAK_BLOCK)
        writer.write(ack_for(item, stored.message_id, mode=mode))


async def _drain(writer: asyncio.StreamWriter, timeout_s: float) -> None:
    """Wait for a peer that does not read its ACKs, up to ``timeout_s``; nothing to wait for
    when the ACKs went straight out (the usual case: no task, no extra turn of the loop)."""
    if writer.transport.get_write_buffer_size() or writer.transport.is_closing():
        async with asyncio.timeout(timeout_s):
            await writer.drain()


def storable(item: Inbound) -> Inbound:
    """Header text PostgreSQL can hold: a NUL (or a lone surrogate) in one sender's MSH-10 must
    not fail the insert of the whole batch it is committed with."""
    h = item.header
    texts = (h.sending_application, h.sending_facility, h.control_id, h.message_type)
    joined = "".join((*texts, h.trigger_event, item.message_type))
    if joined.isascii() and "\x00" not in joined:
        return item  # the usual header, checked at once
    if all(_clean(t) == t for t in (*texts, h.trigger_event, item.message_type)):
        return item
    item.header = dataclasses.replace(
        h,
        sending_application=_clean(h.sending_application),
        sending_facility=_clean(h.sending_facility),
        receiving_application=_clean(h.receiving_application),
        receiving_facility=_clean(h.receiving_facility),
        message_type=_clean(h.message_type),
        trigger_event=_clean(h.trigger_event),
        control_id=_clean(h.control_id),
    )
    item.message_type = _clean(item.message_type)
    return item


def _clean(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


class HL7ReaderFailed(Exception):
    """The HL7 reader raised something other than HL7Error: answered and stored as unreadable."""


class _RefusalLog:
    """One log line per refused (or evicted) connection, at most one a second under a flood (with
    a count)."""

    def __init__(self, channel_name: str, what: str) -> None:
        self.channel_name = channel_name
        self.what = what
        self.last = 0.0
        self.quiet = 0

    def note(self, remote: str, why: str) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            self.quiet += 1
            return
        more = f" ({self.quiet} more since the last line)" if self.quiet else ""
        log.warning(
            "channel %r: %s from %s: %s%s",
            self.channel_name,
            self.what,
            remote,
            why,
            more,
        )
        self.last, self.quiet = now, 0
