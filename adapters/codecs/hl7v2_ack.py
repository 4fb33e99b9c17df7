"""HL7 v2 acknowledgements: the ACK a receiver owes the sender, in the sender's own dialect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from adapters.codecs.hl7v2 import (
    DEFAULT_ENCODING,
    SEGMENT_SPLIT,
    Encoding,
    HL7Error,
    Message,
    Segment,
    build_segment,
    unescape,
)

# HL7 table 0357 codes used in ERR-3 (v2.5+) / ERR-1.4 (older versions).
ERROR_CODES = {
    "segment_sequence": ("100", "Segment sequence error"),
    "required_field": ("101", "Required field missing"),
    "data_type": ("102", "Data type error"),
    "unsupported_message_type": ("200", "Unsupported message type"),
    "unsupported_version": ("203", "Unsupported version id"),
    "internal": ("207", "Application internal error"),
}


@dataclass(frozen=True, slots=True)
class Header:
    """The MSH fields an ACK needs, read leniently so even a broken message can be answered."""

    enc: Encoding = DEFAULT_ENCODING
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    message_type: str = ""
    trigger_event: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"
    raw_fields: tuple[str, ...] = ()
    # MSH-15 / MSH-16 (HL7 table 0155: AL, NE, ER, SU), read for the enhanced ACK mode.
    accept_ack_type: str = ""
    application_ack_type: str = ""

    @classmethod
    def of(cls, message: Message) -> Header:
        msh = message.msh
        return cls(
            enc=message.enc,
            sending_application=msh[3],
            sending_facility=msh[4],
            receiving_application=msh[5],
            receiving_facility=msh[6],
            message_type=_msh_value(msh, 9, 1),
            trigger_event=_msh_value(msh, 9, 2),
            control_id=_msh_value(msh, 10),
            processing_id=_msh_value(msh, 11) or "P",
            version=_msh_value(msh, 12, 1) or "2.5.1",
            accept_ack_type=_msh_value(msh, 15),
            application_ack_type=_msh_value(msh, 16),
        )

    @classmethod
    def salvage(cls, text: str) -> Header:
        """Best effort on input `parse` refused: whatever MSH fields can be read, defaults else."""
        start = text.find("MSH")
        if start == -1 or len(text) < start + 8:
            return cls()
        line = SEGMENT_SPLIT.split(text[start:], 1)[0]
        if len(line) < 4:  # "MSH" alone on its line: nothing to salvage
            return cls()
        sep = line[3]
        fields = ["MSH", sep, *line.split(sep)[1:]]
        try:
            enc = Encoding.from_msh(sep, fields[2])
        except HL7Error:
            enc = DEFAULT_ENCODING
            sep = enc.field

        def f(n: int, comp: int | None = None) -> str:
            value = fields[n] if n < len(fields) else ""
            value = value.split(enc.repetition)[0]
            if comp is not None:
                parts = value.split(enc.component)
                value = parts[comp - 1] if comp <= len(parts) else ""
            return unescape(value, enc)[:200]

        return cls(
            enc=enc,
            sending_application=fields[3] if len(fields) > 3 else "",
            sending_facility=fields[4] if len(fields) > 4 else "",
            receiving_application=fields[5] if len(fields) > 5 else "",
            receiving_facility=fields[6] if len(fields) > 6 else "",
            message_type=f(9, 1),
            trigger_event=f(9, 2),
            control_id=f(10),
            processing_id=f(11, 1) or "P",
            version=f(12, 1) or "2.5.1",
            accept_ack_type=f(15, 1)[:2],
            application_ack_type=f(16, 1)[:2],
        )


def _msh_value(msh: Segment, n: int, comp: int | None = None) -> str:
    """``msh.get(n, comp)``, read straight from the text when the field has no repetitions,
    subcomponents or escapes (nearly always: this runs for every message received)."""
    raw, enc = msh[n], msh.enc
    if enc.repetition in raw or enc.subcomponent in raw or enc.escape in raw:
        return msh.get(n) if comp is None else msh.get(n, comp)
    if comp is None:
        return raw.split(enc.component, 1)[0]
    parts = raw.split(enc.component)
    return parts[comp - 1] if comp <= len(parts) else ""


def _version_tuple(version: str) -> tuple[int, ...]:
    nums = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        nums.append(int(digits))
    return tuple(nums) or (2, 5, 1)


def build_ack(
    header: Header,
    code: str,
    *,
    control_id: str,
    text: str = "",
    error_code: str = "internal",
    error_location: tuple[str, int | None, int | None] | None = None,
    now: datetime | None = None,
) -> str:
    """An ACK (MSA-1 = AA/AE/AR, or CA/CE/CR) to ``header``'s message, as one ER7 string.

    MSH sending and receiving fields are swapped, MSA-2 echoes the original control id, and the
    version and encoding characters are the sender's. For AE/AR the reason goes in MSA-3 (read by
    older receivers) and in an ERR segment laid out for the message's version.
    """
    enc = header.enc
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%d%H%M%S%z")
    trigger = header.trigger_event
    msh = enc.field.join(
        [
            "MSH",
            enc.msh2,
            header.receiving_application,
            header.receiving_facility,
            header.sending_application,
            header.sending_facility,
            stamp,
            "",
            enc.component.join(["ACK", trigger, "ACK"]) if trigger else "ACK",
            control_id,
            header.processing_id,
            header.version,
        ]
    )
    segments = [
        msh,
        build_segment("MSA", [code, header.control_id, text[:80] if text else ""], enc),
    ]
    if code[1:] in ("E", "R"):
        segments.append(_err_segment(header, text, error_code, error_location))
    return "\r".join(segments) + "\r"


def _err_segment(
    header: Header,
    text: str,
    error_code: str,
    location: tuple[str, int | None, int | None] | None,
) -> str:
    enc = header.enc
    number, label = ERROR_CODES.get(error_code, ERROR_CODES["internal"])
    seg_name, seg_index, field = location or ("", None, None)
    if _version_tuple(header.version) >= (2, 5):
        loc = [seg_name, str(seg_index or ""), str(field or "")] if seg_name else ""
        return build_segment(
            "ERR", {2: loc, 3: [number, label, "HL70357"], 4: "E", 8: text[:250]}, enc
        )
    # Before 2.5 ERR-1 is one composite: segment^sequence^field^code&text&table.
    return build_segment(
        "ERR",
        {1: [seg_name, str(seg_index or ""), str(field or ""), [number, text[:200], "HL70357"]]},
        enc,
    )


# --- Which acknowledgement a message gets, and whether it gets one at all.

AckMode = Literal["original", "enhanced"]
Verdict = Literal["accept", "error", "reject"]

_ORIGINAL_CODES: dict[Verdict, str] = {"accept": "AA", "error": "AE", "reject": "AR"}
_COMMIT_CODES: dict[Verdict, str] = {"accept": "CA", "error": "CE", "reject": "CR"}
# MSH-15 (table 0155): the verdicts for which the sender wants an accept acknowledgement.
_WANTED: dict[str, frozenset[Verdict]] = {
    "AL": frozenset({"accept", "error", "reject"}),
    "NE": frozenset(),
    "ER": frozenset({"error", "reject"}),
    "SU": frozenset({"accept"}),
}


def ack_code(verdict: Verdict, header: Header, mode: AckMode, *, committed: bool = True) -> str:
    """The MSA-1 code owed for ``verdict``, or "" when no acknowledgement is to be sent.

    Every ACK goes out after the commit; these rules only pick its code and whether it is owed:

    - ``original`` mode: AA / AE / AR, always sent (MSH-15 and MSH-16 are ignored).
    - ``enhanced`` mode, for a message whose MSH-15 and MSH-16 are both empty: the standard says
      such a message follows the original rules, so AA / AE / AR, always sent.
    - ``enhanced`` mode otherwise: a commit (accept) acknowledgement CA / CE / CR, sent when
      MSH-15 asks for it: AL always, NE never, ER only for CE / CR, SU only for CA. An empty or
      unknown MSH-15 counts as AL: an answer nobody asked for costs less than a sender waiting.
    - A message the hub failed to commit (``committed=False``) is always answered (AE, or CE in
      enhanced mode), whatever MSH-15 says: silence would let the sender believe it was kept.

    MSH-16 (application acknowledgement) is not honoured: the hub never sends a deferred
    application ACK, only the immediate one chosen here.
    """
    if mode == "original" or not (header.accept_ack_type or header.application_ack_type):
        return _ORIGINAL_CODES[verdict]
    code = _COMMIT_CODES[verdict]
    if not committed:
        return code
    wanted = _WANTED.get(header.accept_ack_type.upper(), _WANTED["AL"])
    return code if verdict in wanted else ""
