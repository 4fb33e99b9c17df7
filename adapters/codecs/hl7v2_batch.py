"""HL7 v2 batch files: FHS/BHS ... BTS/FTS envelopes, and messages sent back to back.

`split_batch` cuts the bytes into one bytes object per message and checks the envelope, without
decoding the text: each message keeps its own bytes, so `parse` still finds its charset in its own
MSH-18. The envelope segments themselves are dropped; `read_batch` keeps them for callers that
answer a batch with a batch acknowledgement.

The rules, in the standard's terms (chapter 2, "batch protocol"):
- FHS opens a file and FTS closes it; BHS opens a batch and BTS closes it. Senders often leave
  the trailers out (or even the headers), so a missing trailer is tolerated.
- A message runs from its MSH to the next MSH or envelope segment.
- Any other segment outside a message (after a BHS, say, with no MSH) is an error: that data
  belongs to no message and dropping it silently would lose it.
- BTS-1 (message count) and FTS-1 (batch count), when given, must match what was read: a
  mismatch means messages were lost on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.codecs.hl7v2 import (
    _AROUND,
    _SEGMENT_NAME,
    BATCH_SEGMENTS,
    HL7Error,
    _not_msh,
    split_segments,
)

_HEADER_SEGMENTS = ("MSH", "FHS", "BHS")


@dataclass(slots=True)
class Batch:
    """A batch file read: its messages (bytes, one each) and the envelope segments as sent."""

    messages: list[bytes] = field(default_factory=list)
    file_headers: list[bytes] = field(default_factory=list)  # FHS (several: files concatenated)
    batch_headers: list[bytes] = field(default_factory=list)  # BHS, one per batch
    trailers: list[bytes] = field(default_factory=list)  # BTS and FTS


def split_batch(data: bytes) -> list[bytes]:
    """Split a batch file (or messages back to back) into one bytes object per message.

    Each message comes back with ``\\r`` after every segment, its bytes otherwise untouched.
    A single message gives a one-item list; an envelope with no message an empty one. Raises
    HL7Error naming the segment (1-based position in the file) when the file cannot be split
    faithfully: empty input, text before the first segment, a segment outside any message, or a
    trailer count that disagrees with the messages read.
    """
    return read_batch(data).messages


def is_batch(data: bytes) -> bool:
    """True when the bytes start with a batch header or hold more than one MSH segment."""
    head = data.lstrip(b" \t\r\n\x00\x0b\xef\xbb\xbf")[:3]
    if head in (b"FHS", b"BHS"):
        return True
    return (head == b"MSH") + data.count(b"\rMSH") + data.count(b"\nMSH") > 1


def read_batch(data: bytes) -> Batch:
    """Read a batch file: its messages and envelope segments (see `split_batch`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"read_batch() takes bytes, not {type(data).__name__}")
    # latin-1 maps every byte to one character and back, so slicing the text slices the bytes.
    text = bytes(data).decode("latin-1")
    if text.startswith("\xef\xbb\xbf"):  # a UTF-8 byte order mark, seen as latin-1
        text = text[3:]
    text = text.strip(_AROUND)
    if not text:
        raise HL7Error("the batch is empty")
    if text[:3] not in _HEADER_SEGMENTS:
        raise _not_msh(text)
    field_sep = text[3:4]
    batch = Batch()
    current: list[str] | None = None  # the lines of the message being read
    batch_messages = 0  # messages read since the last BHS
    batches = 0  # BHS read since the last FHS
    index = 0  # 1-based position of the segment in the file, blank lines skipped
    last_header = ""  # what opened the current context, for the error on a stray segment

    def close_message() -> None:
        nonlocal current, batch_messages
        if current is not None:
            batch.messages.append(("\r".join(current) + "\r").encode("latin-1"))
            batch_messages += 1
            current = None

    for line in split_segments(text, field_sep):
        line = line.strip(" \t\x00")
        if not line:
            continue
        index += 1
        name = line[:3]
        if not _SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != field_sep):
            raise HL7Error(
                f"segment name {line[:12]!r} is not three upper-case letters or digits "
                f"followed by the field separator {field_sep!r}",
                segment_index=index,
            )
        if name == "MSH":
            close_message()
            current = [line]
            last_header = f"MSH at segment #{index}"
            continue
        if name not in BATCH_SEGMENTS:
            if current is None:
                raise HL7Error(
                    f"segment {name} is outside any message: it follows "
                    f"{last_header or 'nothing'}, not an MSH",
                    segment_index=index,
                    segment=name,
                )
            current.append(line)
            continue
        close_message()
        raw = line.encode("latin-1")
        if name == "FHS":
            batch.file_headers.append(raw)
            batches = 0
        elif name == "BHS":
            batch.batch_headers.append(raw)
            batch_messages = 0
            batches += 1
        elif name == "BTS":
            batch.trailers.append(raw)
            _check_count(line, field_sep, batch_messages, "messages", index)
            batch_messages = 0
        else:  # FTS
            batch.trailers.append(raw)
            _check_count(line, field_sep, batches, "batches", index)
            batches = 0
        last_header = f"{name} at segment #{index}"
    close_message()
    return batch


def _check_count(line: str, field_sep: str, counted: int, what: str, index: int) -> None:
    """BTS-1 / FTS-1 give the number of messages / batches; when given it must match."""
    fields = line.split(field_sep)
    declared = fields[1].strip() if len(fields) > 1 else ""
    if declared.isdigit() and int(declared) != counted:
        name = line[:3]
        raise HL7Error(
            f"{name}-1 says {int(declared)} {what} but {counted} were read: part of the batch "
            "is missing or extra",
            segment_index=index,
            segment=name,
            field=1,
        )
