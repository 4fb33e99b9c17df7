"""What most message maps begin with: the patient (PID, PD1) and the visit (PV1, PV2)."""

from __future__ import annotations

from adapters.mapping.context import Context
from adapters.mapping.segments.encounter import has_visit, map_encounter
from adapters.mapping.segments.patient import map_patient


def map_subject(ctx: Context, *, required: bool = True) -> str | None:
    """Patient from the first PID (+ PD1), Encounter from the first PV1 (+ PV2) that describes
    a visit. ``required``: the message map needs a patient (MappingError without PID)."""
    message = ctx.message
    pid = ctx.require_segment("PID", "Patient") if required else message.first("PID")
    if pid is None:
        return None
    url = map_patient(ctx, pid, message.first("PD1"))
    pv1 = message.first("PV1")
    if pv1 is not None and has_visit(ctx, pv1):
        map_encounter(ctx, pv1, message.first("PV2"), event=message.trigger_event.upper())
    return url
