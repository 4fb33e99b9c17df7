"""File pickup: a directory polled for HL7 v2 files, each stored through the MLLP ingest path.

A poll takes the files matching the channel's glob, oldest first, and for each one:

1. reads it and splits it into messages (batch envelopes FHS/BHS/BTS/FTS, or messages back to
   back; see `adapters.codecs.hl7v2_batch`);
2. stores every message through the listeners' `GroupCommitter` (dedupe and insert in one
   statement; the workers are told afterwards), exactly as if it had come over MLLP;
3. only after that commit, moves the file to ``processed/`` in the same directory.

A file that cannot be read or split at all goes to ``error/`` instead, next to a sidecar
``<name>.error.txt`` that gives the reason. A message that splits out but does not parse is
stored with its error, as MLLP does, and its file counts as processed.

A file still being written is not taken: it must not have been modified for ``settle_s``
seconds (its modification time is compared with the clock), since a writer appending to it keeps
moving that time forward. Writers that can should still write under another name and rename the
finished file into the glob: a rename is atomic, a settle time is a guess.

Nothing is lost on a crash: if the process dies (or the move fails) after the commit, the file is
still there and is read again at the next poll, and the dedupe makes that harmless. Messages the
usual (sender, MSH-10) key cannot tell apart (no MSH-10, or unreadable) are keyed by the file's
digest and their position in it instead. Both rely on the channel's dedupe window
(``dedupe_window_s`` > 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.codecs.hl7v2 import HL7Error
from adapters.codecs.hl7v2_batch import split_batch
from adapters.transports.mllp import KEEP_OF_OVERSIZE
from channels_app.pipeline.ingest import (
    GroupCommitter,
    Inbound,
    StoreFailed,
    framing_error,
    read_inbound,
)
from channels_app.sources.mllp import storable

log = logging.getLogger(__name__)

PROCESSED_DIR = "processed"
ERROR_DIR = "error"


class PickupConfig(BaseModel):
    """A file pickup channel's ``source_config``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    directory: Path = Field(description="Folder to pick files up from (processed/, error/ inside).")
    glob: str = Field("*.hl7", title="Pattern", description="Which files, e.g. *.hl7 or ADT_*.txt.")
    interval_s: float = Field(5.0, gt=0, description="How often the folder is looked at.")
    # A file modified less than this long ago may still be growing: it waits for the next poll.
    settle_s: float = Field(
        1.0, ge=0, description="A file changed more recently waits: it may still be written."
    )
    # Larger files go to error/ unread, so one huge file cannot exhaust the listener's memory.
    max_file_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Larger files go to error/ unread."
    )


@dataclass(frozen=True, slots=True)
class PickupSpec:
    channel_id: int
    channel_name: str
    channel_version_id: int | None
    dedupe_window_s: int
    max_message_bytes: int
    config: PickupConfig


def pickup_config(channel_name: str, source_config: dict) -> PickupConfig:
    try:
        return PickupConfig.model_validate(source_config or {})
    except ValidationError as exc:
        raise ValueError(f"channel {channel_name!r}: bad file pickup settings: {exc}") from exc


class FileInbound(Inbound):
    """A message read from a file: when the (sender, MSH-10) key cannot identify it, its file's
    digest and its position in the file do, so reading the file again stores nothing twice."""

    __slots__ = ("position_key",)

    @property
    def dedupe_key(self) -> str | None:
        key = Inbound.dedupe_key.fget(self)
        if key is None and self.dedupe_window_s > 0:
            return self.position_key
        return key


class Unreadable(Exception):
    """The file cannot be read or split into messages: it goes to error/ with this reason."""


class FilePoller:
    def __init__(self, spec: PickupSpec, committer: GroupCommitter) -> None:
        self.spec = spec
        self.config = spec.config
        self.committer = committer
        self.failure = ""  # why the last poll failed ("" when it did not), for the heartbeat
        self.last_message_at: float | None = None  # time.time() of the last file committed

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``interval_s`` until ``stop`` is set; a failed poll is logged and retried."""
        log.info(
            "channel %r picking up %s in %s every %g s",
            self.spec.channel_name,
            self.config.glob,
            self.config.directory,
            self.config.interval_s,
        )
        while not stop.is_set():
            try:
                await self.poll(stop)
                self.failure = ""
            except Exception as exc:  # the next poll tries again; the files are still there
                if str(exc) != self.failure:  # once per cause, not once per poll
                    log.error("channel %r: file pickup failed: %s", self.spec.channel_name, exc)
                self.failure = str(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.interval_s)

    async def poll(self, stop: asyncio.Event | None = None) -> int:
        """Take every ready file; returns how many were moved out of the directory."""
        done = 0
        for path in await asyncio.to_thread(self.ready_files):
            if stop is not None and stop.is_set():
                break
            done += await self.take(path)
        return done

    def ready_files(self) -> list[Path]:
        """Regular files matching the glob, left alone for ``settle_s``, oldest first."""
        if not self.config.directory.is_dir():
            raise NotADirectoryError(f"{self.config.directory} is not a directory")
        now = datetime.now(UTC).timestamp()
        ready = []
        for path in self.config.directory.glob(self.config.glob):
            try:
                st = path.stat()
            except FileNotFoundError:  # taken by another listener meanwhile
                continue
            if not path.is_file() or path.parent.name in (PROCESSED_DIR, ERROR_DIR):
                continue
            if now - st.st_mtime >= self.config.settle_s:
                ready.append((st.st_mtime, path.name, path))
        return [path for *_, path in sorted(ready)]

    async def take(self, path: Path) -> int:
        try:
            items = await asyncio.to_thread(self.read, path)
        except FileNotFoundError:
            return 0  # taken by another listener meanwhile
        except Unreadable as exc:
            log.warning(
                "channel %r: %s moved to %s/: %s", self.spec.channel_name, path.name, ERROR_DIR, exc
            )
            return await asyncio.to_thread(self.move, path, ERROR_DIR, str(exc))
        results = await asyncio.gather(
            *(self.committer.submit(item) for item in items), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # What was stored is stored; the rest waits for the next poll, the dedupe skips the rest.
            reason = failed[0] if isinstance(failed[0], StoreFailed) else type(failed[0]).__name__
            log.warning(
                "channel %r: %s left for the next poll: %d of %d message(s) not stored (%s)",
                self.spec.channel_name,
                path.name,
                len(failed),
                len(items),
                reason,
            )
            return 0
        self.last_message_at = time.time()
        return await asyncio.to_thread(self.move, path, PROCESSED_DIR)

    def read(self, path: Path) -> list[Inbound]:
        """The file's messages, ready to store. Raises Unreadable when there are none to store."""
        try:
            size = path.stat().st_size
            if size > self.config.max_file_bytes:
                raise Unreadable(f"{size} bytes, over max_file_bytes {self.config.max_file_bytes}")
            data = path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise Unreadable(f"cannot be read: {exc.strerror or exc}") from exc
        try:
            messages = split_batch(data)
        except HL7Error as exc:
            raise Unreadable(f"cannot be split into HL7 v2 messages: {exc}") from exc
        if not messages:
            raise Unreadable("holds a batch envelope but no message")
        digest = hashlib.sha256(data).hexdigest()[:32]
        return [
            self._inbound(raw, f"file|{digest}|{n}", path.name)
            for n, raw in enumerate(messages, start=1)
        ]

    def _inbound(self, raw: bytes, position_key: str, name: str) -> FileInbound:
        common = {
            "channel_id": self.spec.channel_id,
            "channel_version_id": self.spec.channel_version_id,
            "dedupe_window_s": self.spec.dedupe_window_s,
            "remote_addr": f"file:{name}"[:100],
        }
        limit = self.spec.max_message_bytes
        if len(raw) > limit:
            item = framing_error(
                raw[:KEEP_OF_OVERSIZE], f"message larger than the {limit}-byte limit", **common
            )
        else:
            item = read_inbound(raw, **common)
        item = storable(item)
        fields = {f.name: getattr(item, f.name) for f in dataclasses.fields(Inbound)}
        inbound = FileInbound(**fields)
        inbound.position_key = position_key
        return inbound

    def move(self, path: Path, folder: str, reason: str = "") -> int:
        """Move ``path`` into ``folder`` (never over another file); with a reason, write the
        sidecar first, so a crash in between leaves the file to be tried again, not unexplained.
        Returns 1 if moved, 0 if the file stays (logged; the next poll tries again)."""
        target_dir = path.parent / folder
        try:
            target_dir.mkdir(exist_ok=True)
            target = _free_name(target_dir, path.name)
            if reason:
                sidecar = target.with_name(target.name + ".error.txt")
                sidecar.write_text(f"{path.name}: {reason}\n", encoding="utf-8")
            os.rename(path, target)
        except FileNotFoundError:
            return 0  # taken by another listener meanwhile
        except OSError as exc:
            log.error(
                "channel %r: could not move %s to %s/ (it will be read again): %s",
                self.spec.channel_name,
                path.name,
                folder,
                exc,
            )
            return 0
        return 1


def _free_name(directory: Path, name: str) -> Path:
    """``directory/name``, or the name with a timestamp added when that is taken already."""
    target = directory / name
    if not target.exists():
        return target
    stem, dot, ext = name.partition(".")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return directory / f"{stem}-{stamp}{dot}{ext}"
