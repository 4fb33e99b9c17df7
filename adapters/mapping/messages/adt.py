"""ADT: admit, visit and patient-information events -> Patient, Encounter and what the message
carries about them; merges (A34/A40 ...) -> Patient.link."""

from __future__ import annotations

from adapters.mapping.context import Context
from adapters.mapping.registry import handles
from adapters.mapping.segments.encounter import has_visit, map_encounter
from adapters.mapping.segments.patient import map_merge, map_patient

VISIT_EVENTS = [f"A{n:02d}" for n in range(1, 33) if n not in (18, 30)]


@handles("ADT", *VISIT_EVENTS)
def adt(ctx: Context) -> None:
    message = ctx.message
    pid = ctx.require_segment("PID", "Patient")
    map_patient(ctx, pid, message.first("PD1"))
    pv1 = message.first("PV1")
    if pv1 is not None and has_visit(ctx, pv1):
        map_encounter(ctx, pv1, message.first("PV2"), event=message.trigger_event.upper())


@handles(
    "ADT", "A18", "A30", "A34", "A35", "A36", "A39", "A40", "A41", "A42", "A46", "A47", "A48", "A49"
)
def merge(ctx: Context) -> None:
    """Each PID is a surviving patient; the MRG that follows it names the patient it replaces."""
    ctx.require_segment("PID", "Patient")
    survivor = None
    for seg in ctx.message:
        if seg.name == "PID":
            survivor = map_patient(ctx, seg)
        elif seg.name == "MRG" and survivor is not None:
            map_merge(ctx, seg, survivor)
    if ctx.message.first("MRG") is None:
        raise ctx.fail(
            None,
            None,
            "",
            "Patient.link",
            f"a {ctx.message.message_type} merge needs an MRG segment",
            segment_name="MRG",
        )
