"""File destination: one file per message, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

from adapters.registry import register_transport
from adapters.transports.base import Payload, SendResult, TransportError


@register_transport("file")
class FileTransport:
    needs_source = False

    class Config(BaseModel):
        directory: str
        # {name} is the payload's name (message id and idempotency key); {ext} follows the type.
        filename: str = "{name}.{ext}"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.directory = Path(config.directory)

    def send(self, payload: Payload, *, timeout: float) -> SendResult:
        ext = "json" if "json" in payload.content_type else "hl7"
        target = self.directory / self.config.filename.format(name=payload.name, ext=ext)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload.body)
                    fh.flush()
                    os.fsync(fh.fileno())
                # Same name for the same delivery: a retry overwrites instead of duplicating.
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise TransportError(f"cannot write {target}: {exc.strerror or exc}")
        return SendResult(
            None, f"wrote {target.name} ({len(payload.body)} bytes)", f"write {target}"
        )
