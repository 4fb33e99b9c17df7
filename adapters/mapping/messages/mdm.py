"""MDM^T01-T11 -> DocumentReference (TXA + OBX). T02/T04/T06/T08/T10 carry the document; the
notifications (T01/T03/T05/T07/T09/T11) describe it without content (a warning says so)."""

from __future__ import annotations

from adapters.mapping.context import Context, ref
from adapters.mapping.messages.common import map_subject
from adapters.mapping.registry import handles
from adapters.mapping.segments.document import map_document
from adapters.mapping.segments.financial import map_account
from adapters.mapping.segments.order import map_service_request


# OBX here is the document's content (IG MDM_T02: OBX -> DocumentReference), not an Observation.
@handles(
    "MDM",
    *[f"T{n:02d}" for n in range(1, 12)],
    segments="MSH PID PD1 PV1 PV2 ORC:ServiceRequest OBR:ServiceRequest TXA OBX:DocumentReference",
)
def mdm(ctx: Context) -> None:
    """The document, and the order it answers when the message carries one (ORC/OBR, v2.5+):
    a ServiceRequest given as DocumentReference.context.related."""
    txa = ctx.require_segment("TXA", "DocumentReference")
    map_subject(ctx)
    message = ctx.message
    orc, obr = message.first("ORC"), message.first("OBR")
    request = None
    if orc is not None or obr is not None:
        request = map_service_request(ctx, orc, obr, default_status="completed")
    map_account(ctx, [])
    url = map_document(ctx, txa, message.all("OBX"))
    if message.trigger_event.upper() == "T11":  # document cancel notification
        ctx.resource(url)["status"] = "entered-in-error"
    if request:
        doc = ctx.resource(url)
        doc.setdefault("context", {})["related"] = [ref(request)]
