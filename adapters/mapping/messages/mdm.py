"""MDM^T02/T04/T06/T08/T10 (events that carry the document) -> DocumentReference (TXA + OBX)."""

from __future__ import annotations

from adapters.mapping.context import Context
from adapters.mapping.messages.common import map_subject
from adapters.mapping.registry import handles
from adapters.mapping.segments.document import map_document


@handles("MDM", "T02", "T04", "T06", "T08", "T10")
def mdm(ctx: Context) -> None:
    txa = ctx.require_segment("TXA", "DocumentReference")
    map_subject(ctx)
    map_document(ctx, txa, ctx.message.all("OBX"))
