"""File destination: one file per message, or batches of messages, always written atomically.

Names come from the ``filename`` pattern, relative to ``directory`` (``/`` makes subdirectories,
created as needed). Placeholders, in ``str.format`` syntax with an optional format spec:

- ``{name}``: the payload's name (message id and a prefix of the idempotency key);
- ``{message_id}``: the message's id, an integer (``{message_id:010d}``);
- ``{key}``: the delivery's idempotency key;
- ``{date}``: the UTC time of the write, or of the batch's opening (``{date:%Y%m%d}``);
- ``{ext}``: ``json`` for FHIR JSON (``ndjson`` in a batch), ``hl7`` otherwise;
- ``{batch}``: a unique id of the batch (batch mode only, and required there).

In batch mode ``{name}``, ``{message_id}`` and ``{key}`` are those of the batch's first message.
Attribute or index access in a placeholder is refused, and so is a pattern that leaves the directory.

One file per message (``batch: false``, the default): written to a temporary file in the target
directory, fsynced, renamed over the target, and the directory fsynced. A retry writes the same
name, so it replaces rather than duplicates (unless the name has ``{date}`` and the retry comes on
another day).

Batches (``batch: true``): each message is appended as one line (JSON with its line breaks, which
are only ever whitespace in JSON, turned into spaces: NDJSON) to ``<final name>.part``, and the part
file is renamed to its final name when it holds ``batch_max`` messages or is ``batch_max_age_s``
old, whichever comes first. Readers must ignore ``*.part`` files.

**What "delivered" means for a batched message**: its line has been appended to the open part file
and fsynced, so it is on disk and will appear under the batch's final name: when the batch closes,
or, if the process dies first, when a file destination for that directory next starts (at its
first send) and completes every ``.part`` no live process holds (an advisory ``flock`` marks the open one; a torn
last line from a crash mid-write is cut off first). A retry of a message still in the open batch
is not appended again; a retry after its batch closed (the worker died after the fsync and before
recording the delivery) appends it again, so batch consumers see each message at least once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import string
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.registry import register_transport
from adapters.transports.base import Encoded, Payload, SendResult, TransportError

PART = ".part"
PLACEHOLDERS = {"name", "message_id", "key", "date", "ext", "batch"}
SAMPLE = {
    "name": "message-0000000001-0123abcd",
    "message_id": 1,
    "key": "0123abcd",
    "date": datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC),
    "ext": "json",
    "batch": "20240131T235959-0a1b2c",
}


def check_pattern(pattern: str, *, batch: bool) -> None:
    """Refuse placeholders that are unknown or reach into objects, and names outside the dir."""
    fields = set()
    for _literal, field, _spec, _conversion in string.Formatter().parse(pattern):
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            raise ValueError(
                f"filename: unknown placeholder {{{field}}}; known: {', '.join(sorted(PLACEHOLDERS))}"
            )
        fields.add(field)
    if batch and "batch" not in fields:
        raise ValueError("filename: a batch file name needs {batch}, so batches never collide")
    if not batch and "batch" in fields:
        raise ValueError("filename: {batch} is only known in batch mode")
    try:
        sample = pattern.format(**SAMPLE)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"filename: {exc}")
    parts = sample.split("/")
    if sample.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError("filename: the name must stay inside the directory (no /.., no leading /)")
    if sample.endswith(PART):
        raise ValueError(f"filename: {PART} is reserved for open batches")


@register_transport("file")
class FileTransport:
    needs_source = False

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        directory: str = Field(min_length=1, description="Where files are written.")
        # Default: "{name}.{ext}", or "batch-{date:%Y%m%dT%H%M%S}-{batch}.{ext}" in batch mode.
        filename: str | None = Field(
            None,
            description="A pattern with {name}, {message_id}, {key}, {date:%Y%m%d}, {ext} "
            "({batch} in batch mode). Blank: {name}.{ext}.",
        )
        batch: bool = Field(False, description="Append messages to one file per batch (NDJSON).")
        batch_max: int = Field(100, ge=1, description="Messages per batch file.")
        batch_max_age_s: float = Field(
            60.0, gt=0, description="A batch file is closed after this long."
        )

        @model_validator(mode="after")
        def _pattern(self):
            if self.filename is None:
                self.filename = (
                    "batch-{date:%Y%m%dT%H%M%S}-{batch}.{ext}" if self.batch else "{name}.{ext}"
                )
            check_pattern(self.filename, batch=self.batch)
            return self

    def __init__(self, config: Config) -> None:
        self.config = config
        self.directory = Path(config.directory)
        self.lock = threading.Lock()
        self.batch: _Batch | None = None
        # Leftovers are completed by the first send, not here: configs are also built to be
        # validated (API, forms), and that must not touch the directory.
        self.recovered = False

    def encode(self, payload: Payload, when: datetime | None = None) -> Encoded:
        """The bytes written for ``payload`` and the file's name (in batch mode, the line appended
        and the name a batch opened ``when`` would get)."""
        json_body = "json" in payload.content_type
        if self.config.batch:
            ext, body = ("ndjson" if json_body else "hl7"), _record(payload.body, json_body)
            target = self._target(payload, ext=ext, when=when, batch="BATCH")
        else:
            body, target = (
                payload.body,
                self._target(payload, ext="json" if json_body else "hl7", when=when),
            )
        return Encoded(body, payload.content_type, target.name)

    def send(self, payload: Payload, *, timeout: float) -> SendResult:
        if self.config.batch:
            return self._append(payload)
        json_body = "json" in payload.content_type
        target = self._target(payload, ext="json" if json_body else "hl7")
        try:
            write_atomically(target, payload.body)
        except OSError as exc:
            raise TransportError(f"cannot write {target}: {exc.strerror or exc}")
        return SendResult(
            None, f"wrote {target.name} ({len(payload.body)} bytes)", f"write {target}"
        )

    def close(self) -> None:
        """Close the open batch now (its part file becomes the final file)."""
        with self.lock:
            self._close_batch()

    # ------------------------------------------------------------------------------ batches

    def _append(self, payload: Payload) -> SendResult:
        json_body = "json" in payload.content_type
        record = _record(payload.body, json_body)
        with self.lock:
            if not self.recovered:
                complete_leftovers(self.directory)
                self.recovered = True
            batch = self.batch
            if batch is not None and batch.age() >= self.config.batch_max_age_s:
                self._close_batch()
                batch = None
            if batch is None:
                batch = self.batch = self._open_batch(payload, "ndjson" if json_body else "hl7")
            if payload.idempotency_key in batch.keys:
                return SendResult(
                    None, f"already in {batch.part.name} (a retry)", f"append to {batch.part}"
                )
            try:
                batch.append(record)
            except OSError as exc:
                # What was written before stays delivered: close the batch around it.
                with contextlib.suppress(OSError):
                    self._close_batch()
                self.batch = None
                raise TransportError(f"cannot append to {batch.part}: {exc.strerror or exc}")
            batch.keys.add(payload.idempotency_key)
            count = len(batch.keys)
            result = SendResult(
                None,
                f"appended to {batch.final.name} ({count}/{self.config.batch_max}, "
                f"{len(record)} bytes)",
                f"append to {batch.part}",
            )
            if count >= self.config.batch_max:
                # Delivered already (fsynced); if the rename fails, the next start completes it.
                with contextlib.suppress(OSError):
                    self._close_batch()
            return result

    def _open_batch(self, payload: Payload, ext: str) -> _Batch:
        opened = datetime.now(UTC)
        batch_id = f"{opened:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        final = self._target(payload, ext=ext, when=opened, batch=batch_id)
        try:
            batch = _Batch(final)
        except OSError as exc:
            raise TransportError(f"cannot open {final}{PART}: {exc.strerror or exc}")
        timer = threading.Timer(self.config.batch_max_age_s, self._expire, args=(batch,))
        timer.daemon = True
        timer.start()
        batch.timer = timer
        return batch

    def _expire(self, batch: _Batch) -> None:
        with self.lock:
            if self.batch is batch:
                with contextlib.suppress(OSError):  # the part file stays for the next start
                    self._close_batch()

    def _close_batch(self) -> None:
        batch, self.batch = self.batch, None
        if batch is not None:
            batch.close()

    # ------------------------------------------------------------------------------ names

    def _target(
        self, payload: Payload, *, ext: str, when: datetime | None = None, batch: str = ""
    ) -> Path:
        name = self.config.filename.format(
            name=_safe(payload.name),
            message_id=payload.message_id,
            key=_safe(payload.idempotency_key),
            date=when or datetime.now(UTC),
            ext=ext,
            batch=batch,
        )
        return self.directory / name


def _record(body: bytes, json_body: bool) -> bytes:
    """One line of a batch file: JSON on one line, HL7 v2 as is (segments end with CR)."""
    line = body.replace(b"\r\n", b" ").replace(b"\n", b" ") if json_body else body.rstrip(b"\n")
    return line + b"\n"


class _Batch:
    """One open part file, held with an exclusive flock so no other process completes it."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.part = final.with_name(final.name + PART)
        self.keys: set[str] = set()
        self.opened = time.monotonic()
        self.timer: threading.Timer | None = None
        self.size = 0
        final.parent.mkdir(parents=True, exist_ok=True)
        # Locked before it takes its .part name, so a starting process never completes it.
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(tmp, self.part)
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        self.fd = fd

    def age(self) -> float:
        return time.monotonic() - self.opened

    def append(self, record: bytes) -> None:
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self.fd, view) :]
            os.fsync(self.fd)
        except OSError:
            with contextlib.suppress(OSError):  # no torn line left behind
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, self.size, os.SEEK_SET)
            raise
        self.size += len(record)

    def close(self) -> None:
        if self.timer:
            self.timer.cancel()
        try:
            os.replace(self.part, self.final)
            _fsync_dir(self.final.parent)
        finally:
            os.close(self.fd)  # releases the flock


def complete_leftovers(directory: Path) -> list[Path]:
    """Rename every part file no live process holds to its final name; returns them."""
    done = []
    if not directory.is_dir():
        return done
    for part in directory.rglob("*" + PART):
        try:
            fd = os.open(part, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another process is filling it
            if not part.exists():  # completed by someone else between rglob and flock
                continue
            _cut_torn_line(fd)
            os.fsync(fd)
            final = part.with_name(part.name[: -len(PART)])
            os.replace(part, final)
            _fsync_dir(part.parent)
            done.append(final)
        except OSError:
            continue  # left for the next start
        finally:
            os.close(fd)
    return done


def _cut_torn_line(fd: int) -> None:
    """Drop the bytes after the last newline: a line a crash interrupted was never delivered."""
    size = os.fstat(fd).st_size
    keep = size
    while keep > 0:
        start = max(0, keep - 65536)
        chunk = os.pread(fd, keep - start, start)
        newline = chunk.rfind(b"\n")
        if newline != -1:
            keep = start + newline + 1
            break
        keep = start
    if keep != size:
        os.ftruncate(fd, keep)


def write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # Same name for the same delivery: a retry overwrites instead of duplicating.
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: the directory entry, not just the file, must reach the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe(value: Any) -> str:
    return str(value).replace("/", "_").replace("\\", "_").replace("\x00", "_")
