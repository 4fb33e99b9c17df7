"""DFT^P03/P11: financial transactions -> one ChargeItem per FT1, with the Account (PID-18,
GT1), Coverage (IN1/IN2), diagnoses and procedures the message carries."""

from __future__ import annotations

from adapters.mapping.context import Context
from adapters.mapping.messages.adt import map_patient_details
from adapters.mapping.messages.common import map_subject
from adapters.mapping.registry import handles
from adapters.mapping.segments.financial import map_account, map_charges
from adapters.mapping.segments.order import map_service_request


@handles(
    "DFT",
    "P03",
    "P11",
    segments="MSH PID PD1 PV1 PV2 ORC:ServiceRequest OBR:ServiceRequest FT1 NK1 AL1 DG1 PR1"
    " RF1 DB1 OBX IN1 IN2 GT1 PDA ACC",
)
def dft(ctx: Context) -> None:
    map_subject(ctx)
    segments = ctx.message.segments[1:]
    charges = [s for s in segments if s.name == "FT1"]
    if not charges:
        raise ctx.fail(
            None, None, "", "ChargeItem", "the DFT message has no FT1 segment", segment_name="FT1"
        )
    map_patient_details(ctx, [s for s in segments if s.name != "GT1"])
    account = map_account(ctx, [s for s in segments if s.name == "GT1"])
    _billed_orders(ctx, segments)
    map_charges(ctx, charges, account)


def _billed_orders(ctx: Context, segments: list) -> None:
    """ORC/OBR of the common order group -> ServiceRequest, done since it is billed."""
    orc = None
    for seg in segments:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "OBR":
            map_service_request(ctx, orc, seg, default_status="completed")
            orc = None
