"""SIU^S12-S26: scheduling -> Appointment (SCH with TQ1/NTE, AIS/AIG/AIL/AIP resources)."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping.context import Context
from adapters.mapping.messages.common import map_subject
from adapters.mapping.messages.oru import note_text
from adapters.mapping.registry import handles
from adapters.mapping.segments.clinical import map_condition
from adapters.mapping.segments.financial import map_account
from adapters.mapping.segments.observation import map_observation
from adapters.mapping.segments.scheduling import map_appointment

RESOURCE_SEGMENTS = ("AIS", "AIG", "AIL", "AIP")


@handles(
    "SIU",
    *[f"S{n}" for n in range(12, 27)],
    segments="MSH PID PD1 PV1 PV2 SCH TQ1:Appointment NTE:Appointment OBX DG1 AIS AIG AIL AIP",
)
def siu(ctx: Context) -> None:
    sch = ctx.require_segment("SCH", "Appointment")
    map_subject(ctx, required=False)
    tq1 = None
    notes: list[str] = []
    resources: list[tuple[hl7v2.Segment, list[str]]] = []
    current = notes
    seen_patient = False
    for seg in ctx.message.segments[1:]:
        name = seg.name
        if name == "TQ1" and tq1 is None:
            tq1 = seg
        elif name == "NTE":
            text = note_text(ctx, seg)
            if text and current is not None:
                current.append(text)
        elif name in RESOURCE_SEGMENTS:
            resources.append((seg, []))
            current = resources[-1][1]
        elif name == "PID":
            seen_patient = True
            current = None  # notes after PID belong to nothing the Appointment holds
        elif name == "DG1" and seen_patient:
            map_condition(ctx, seg)
        elif name == "OBX" and seen_patient:
            map_observation(ctx, seg)
    map_account(ctx, [])
    map_appointment(
        ctx, sch, tq1=tq1, notes=notes, resources=resources, event=ctx.message.trigger_event.upper()
    )
