"""ORM^O01, OML^O21/O33/O35 and OMG^O19: one ServiceRequest per order (ORC, with its OBR), status from
ORC-5 or ORC-1; the order's OBX (ask-at-order-entry answers) -> Observations it points at as
supportingInfo, its SPM -> Specimens, its DG1 -> Conditions given as reasonReference."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.codecs import hl7v2
from adapters.mapping.context import Context, ref
from adapters.mapping.messages.adt import map_patient_details
from adapters.mapping.messages.common import map_subject
from adapters.mapping.messages.oru import note_text
from adapters.mapping.registry import handles
from adapters.mapping.segments.clinical import map_condition
from adapters.mapping.segments.financial import map_charges
from adapters.mapping.segments.observation import map_observation
from adapters.mapping.segments.order import map_service_request
from adapters.mapping.segments.report import order_identifiers, order_key
from adapters.mapping.segments.specimen import map_specimen


@dataclass
class Order:
    orc: hl7v2.Segment | None
    obr: hl7v2.Segment | None = None
    tq1: hl7v2.Segment | None = None
    notes: list[str] = field(default_factory=list)
    observations: list[tuple[hl7v2.Segment, list[str]]] = field(default_factory=list)
    specimens: list[hl7v2.Segment] = field(default_factory=list)
    diagnoses: list[hl7v2.Segment] = field(default_factory=list)


def split_orders(ctx: Context, segments: list[hl7v2.Segment]) -> tuple[list, list[Order]]:
    """(segments before the first order, the orders). An ORC starts an order; an OBR starts
    one too when the current order already has its OBR (OML sends several OBR per ORC)."""
    head: list[hl7v2.Segment] = []
    orders: list[Order] = []
    notes: list[str] | None = None
    for seg in segments:
        name = seg.name
        if name == "ORC":
            orders.append(Order(seg))
            notes = orders[-1].notes
        elif name == "OBR" and orders and orders[-1].obr is None:
            orders[-1].obr = seg
            notes = orders[-1].notes
        elif name == "OBR":
            orders.append(Order(orders[-1].orc if orders else None, seg))
            notes = orders[-1].notes
        elif not orders:
            head.append(seg)
        elif name == "TQ1" and orders[-1].tq1 is None:
            orders[-1].tq1 = seg
        elif name == "NTE":
            text = note_text(ctx, seg)
            if text and notes is not None:
                notes.append(text)
        elif name == "OBX":
            obx_notes: list[str] = []
            orders[-1].observations.append((seg, obx_notes))
            notes = obx_notes
        elif name == "SPM":
            orders[-1].specimens.append(seg)
            notes = None
        elif name == "DG1":
            orders[-1].diagnoses.append(seg)
    return head, orders


ORDER_SEGMENTS = (
    "MSH PID PD1 PV1 PV2 NK1 AL1 DG1 PR1 RF1 DB1 OBX IN1 IN2 GT1 PDA ACC ORC:ServiceRequest"
    " TQ1:ServiceRequest OBR:ServiceRequest NTE:ServiceRequest NTE:Observation SPM FT1 BLG"
)


@handles("ORM", "O01", segments=ORDER_SEGMENTS)
@handles("OML", "O21", "O33", "O35", segments=ORDER_SEGMENTS)
@handles("OMG", "O19", segments=ORDER_SEGMENTS)
def orders(ctx: Context) -> None:
    map_subject(ctx)
    head, found = split_orders(ctx, ctx.message.segments[1:])
    map_patient_details(ctx, [s for s in head if s.name not in ("OBX",)])
    if not found:
        raise ctx.fail(
            None,
            None,
            "",
            "ServiceRequest",
            f"the {ctx.message.message_type} message has no order (ORC or OBR)",
            segment_name="ORC",
        )
    for order in found:
        _order(ctx, order)
    map_charges(ctx, ctx.message.segments[1:])


def _order(ctx: Context, order: Order) -> None:
    key = order_key(*order_identifiers(ctx, order.obr, order.orc))
    supporting = []
    for obx, notes in order.observations:
        url = map_observation(ctx, obx, notes=notes, order_key=key)
        if url:
            supporting.append(url)
    specimens = [s for s in (map_specimen(ctx, spm) for spm in order.specimens) if s]
    conditions = [c for c in (map_condition(ctx, dg1) for dg1 in order.diagnoses) if c]
    url = map_service_request(
        ctx,
        order.orc,
        order.obr,
        notes=order.notes,
        tq1=order.tq1,
        specimens=specimens,
        supporting=supporting,
    )
    if url and conditions:
        ctx.resource(url)["reasonReference"] = [ref(c) for c in conditions]
