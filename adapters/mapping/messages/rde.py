"""Pharmacy: RDE^O11/O25 encoded orders -> one MedicationRequest per RXE (with its ORC, RXO,
RXR, RXC, TQ1 and notes); OMP^O09 orders -> a MedicationRequest per RXO; RDS^O13 dispenses
-> MedicationDispense per RXD; RAS^O17 administrations -> MedicationAdministration per RXA.
Each event points at the order it carries out."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context
from adapters.mapping.messages.adt import map_patient_details
from adapters.mapping.messages.common import map_subject
from adapters.mapping.messages.oru import note_text
from adapters.mapping.registry import handles
from adapters.mapping.segments.financial import map_charges
from adapters.mapping.segments.observation import map_observation
from adapters.mapping.segments.pharmacy import (
    map_medication_request,
    map_order_carried_out,
    map_original_order,
)
from adapters.mapping.segments.pharmacy_events import map_administration, map_dispense


def _new_order(orc: hl7v2.Segment) -> dict:
    return {
        "orc": orc,
        **dict.fromkeys(("rxo", "rxe", "rxr", "tq1")),
        **{k: [] for k in ("notes", "rxc", "order_rxc", "events")},
    }


def pharmacy_orders(ctx: Context) -> list[dict]:
    """The ORC groups, each with its RXO/RXE (first of each), the RXC of each, TQ1, notes, and
    the dispenses (RXD) or administrations (RXA) that follow, each with its own RXR."""
    orders: list[dict] = []
    for seg in ctx.message.segments[1:]:
        name = seg.name
        if name == "ORC":
            orders.append(_new_order(seg))
        elif not orders:
            continue
        order = orders[-1]
        if name in ("RXO", "RXE"):
            order[name.lower()] = order[name.lower()] or seg
        elif name in ("RXD", "RXA"):
            order["events"].append([seg, None])
        elif name == "RXC":  # a component of the encoded drug, or of the order before RXE
            order["rxc" if order["rxe"] is not None else "order_rxc"].append(seg)
        elif name == "RXR" and order["events"] and order["events"][-1][1] is None:
            order["events"][-1][1] = seg
        elif name == "RXR" and not order["events"]:
            order["rxr"] = seg  # the last RXR: the one after RXE gives the route
        elif name == "TQ1":
            order["tq1"] = seg
        elif name == "OBX":
            map_observation(ctx, seg)
        elif name == "NTE":
            text = note_text(ctx, seg)
            if text:
                order["notes"].append(text)
    return orders


def _patient(ctx: Context) -> None:
    map_subject(ctx)
    segments = ctx.message.segments[1:]
    first_order = next((i for i, seg in enumerate(segments) if seg.name == "ORC"), len(segments))
    map_patient_details(ctx, segments[:first_order])


def _request(ctx: Context, order: dict) -> str | None:
    """The order behind a message: the encoded order (RXE), else the order as written (RXO)."""
    if order["rxe"] is not None:
        return map_medication_request(
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
    if order["rxo"] is not None:
        return map_original_order(
            ctx,
            order["rxo"],
            order["orc"],
            order["order_rxc"],
            intent="order",
            notes=order["notes"],
        )
    return None


def _missing(ctx: Context, segment: str, target: str):
    return ctx.fail(
        None,
        None,
        "",
        target,
        f"the {ctx.message.message_type} message has no {segment} segment",
        segment_name=segment,
    )


PHARMACY_SEGMENTS = (
    "MSH PID PD1 PV1 PV2 NK1 AL1 DG1 PR1 RF1 DB1 OBX IN1 IN2 GT1 PDA ACC ORC:MedicationRequest"
    " TQ1:MedicationRequest RXO RXE RXR:MedicationRequest RXC NTE:MedicationRequest FT1 BLG"
)


@handles("RDE", "O01", "O11", "O25", segments=PHARMACY_SEGMENTS)
def rde(ctx: Context) -> None:
    _patient(ctx)
    encoded = [o for o in pharmacy_orders(ctx) if o["rxe"] is not None]
    if not encoded:
        raise _missing(ctx, "RXE", "MedicationRequest")
    map_charges(ctx, ctx.message.segments[1:])
    for order in encoded:
        _request(ctx, order)


@handles("OMP", "O09", segments=PHARMACY_SEGMENTS)
def omp(ctx: Context) -> None:
    """The prescriber's order (RXO, with its RXR and RXC) is the request itself: intent order."""
    _patient(ctx)
    orders = [o for o in pharmacy_orders(ctx) if o["rxo"] is not None]
    if not orders:
        raise _missing(ctx, "RXO", "MedicationRequest")
    for order in orders:
        order["order_rxc"] = order["order_rxc"] or order["rxc"]
        _request(ctx, order)


DRUG_FIELD = {"RXD": 2, "RXA": 5}  # the dispensed or given drug


def _events(ctx: Context, segment: str, target: str, mapper) -> None:
    _patient(ctx)
    orders = pharmacy_orders(ctx)
    if not any(seg.name == segment for o in orders for seg, _ in o["events"]):
        raise _missing(ctx, segment, target)
    for order in orders:
        request = _request(ctx, order)
        if request is None and order["events"]:
            event = order["events"][0][0]
            drug = dt.cwe(ctx.comps(event, DRUG_FIELD[event.name]))
            if drug:
                request = map_order_carried_out(ctx, order["orc"], drug, order["notes"])
        for seg, rxr in order["events"]:
            mapper(ctx, seg, rxr, request)
    map_charges(ctx, ctx.message.segments[1:])


@handles("RDS", "O13", segments=PHARMACY_SEGMENTS + " RXD RXR:MedicationDispense")
def rds(ctx: Context) -> None:
    _events(ctx, "RXD", "MedicationDispense", map_dispense)


@handles(
    "RAS",
    "O17",
    segments=PHARMACY_SEGMENTS + " RXA:MedicationAdministration RXR:MedicationAdministration",
)
def ras(ctx: Context) -> None:
    _events(ctx, "RXA", "MedicationAdministration", map_administration)
