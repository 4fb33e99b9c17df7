"""RDE^O11/O25: pharmacy encoded orders -> one MedicationRequest per RXE (with its ORC, RXO,
RXR, TQ1 and notes)."""

from __future__ import annotations

from adapters.mapping.context import Context
from adapters.mapping.messages.adt import map_patient_details
from adapters.mapping.messages.common import map_subject
from adapters.mapping.messages.oru import note_text
from adapters.mapping.registry import handles
from adapters.mapping.segments.financial import map_charges
from adapters.mapping.segments.observation import map_observation
from adapters.mapping.segments.pharmacy import map_medication_request


@handles("RDE", "O01", "O11", "O25")
def rde(ctx: Context) -> None:
    map_subject(ctx)
    segments = ctx.message.segments[1:]
    first_order = next((i for i, seg in enumerate(segments) if seg.name == "ORC"), len(segments))
    map_patient_details(ctx, segments[:first_order])
    orders: list[dict] = []
    for seg in ctx.message.segments[1:]:
        name = seg.name
        if name == "ORC":
            orders.append(
                {"orc": seg, "rxo": None, "rxe": None, "rxr": None, "tq1": None, "notes": []}
            )
            orders[-1].update(rxc=[], order_rxc=[])
        elif not orders:
            continue
        elif name in ("RXO", "RXE"):
            orders[-1][name.lower()] = orders[-1][name.lower()] or seg
        elif name == "RXC":  # a component of the encoded drug, or of the order before RXE
            orders[-1]["rxc" if orders[-1]["rxe"] is not None else "order_rxc"].append(seg)
        elif name == "RXR":
            orders[-1]["rxr"] = seg  # the last RXR: the one after RXE gives the route
        elif name == "TQ1":
            orders[-1]["tq1"] = seg
        elif name == "OBX":
            map_observation(ctx, seg)
        elif name == "NTE":
            text = note_text(ctx, seg)
            if text:
                orders[-1]["notes"].append(text)
    encoded = [o for o in orders if o["rxe"] is not None]
    if not encoded:
        raise ctx.fail(
            None,
            None,
            "",
            "MedicationRequest",
            f"the {ctx.message.message_type} message has no RXE segment",
            segment_name="RXE",
        )
    map_charges(ctx, ctx.message.segments[1:])
    for order in encoded:
        map_medication_request(
            ctx,
            order["rxe"],
            orc=order["orc"],
            rxo=order["rxo"],
            rxr=order["rxr"],
            tq1=order["tq1"],
            notes=order["notes"],
            components=order["rxc"],
            order_components=order["order_rxc"],
        )
