"""ADT: admit, visit and patient-information events -> Patient, Encounter and what the message
carries about them (NK1, AL1, DG1, PR1, IN1/IN2, GT1, OBX, PDA, ACC); merges (A34/A40 ...) ->
Patient.link."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping.context import Context
from adapters.mapping.registry import handles
from adapters.mapping.segments.clinical import map_allergy, map_condition, map_procedure
from adapters.mapping.segments.encounter import has_visit, map_encounter
from adapters.mapping.segments.financial import map_account, map_coverage
from adapters.mapping.segments.incident import map_accident, map_death_details
from adapters.mapping.segments.observation import map_observation
from adapters.mapping.segments.order import map_referral
from adapters.mapping.segments.patient import (
    map_disability_identifier,
    map_merge,
    map_patient,
)
from adapters.mapping.segments.related import map_next_of_kin

# Every event about a patient and a visit; merges and links have maps of their own. Moves
# (A43-A45) and visit number changes (A50/A51) give the patient and visit as they are now.
VISIT_EVENTS = [
    *(f"A{n:02d}" for n in range(1, 34) if n not in (18, 24, 30)),
    *("A38", "A43", "A44", "A45", "A50", "A51", "A52", "A53", "A54", "A55", "A60", "A61", "A62"),
]


@handles(
    "ADT",
    *VISIT_EVENTS,
    segments="MSH PID PD1 PV1 PV2 NK1 AL1 DG1 PR1 RF1 DB1 OBX IN1 IN2 GT1 PDA ACC",
)
def adt(ctx: Context) -> None:
    message = ctx.message
    pid = ctx.require_segment("PID", "Patient")
    map_patient(ctx, pid, message.first("PD1"))
    pv1 = message.first("PV1")
    if pv1 is not None and has_visit(ctx, pv1):
        map_encounter(ctx, pv1, message.first("PV2"), event=message.trigger_event.upper())
    map_patient_details(ctx, message.segments)


def map_patient_details(ctx: Context, segments: list[hl7v2.Segment]) -> None:
    """The segments about the patient that several message types share, in message order."""
    pending_in1: hl7v2.Segment | None = None
    guarantors: list[hl7v2.Segment] = []
    for seg in segments:
        name = seg.name
        if name != "IN2" and pending_in1 is not None:
            map_coverage(ctx, pending_in1)
            pending_in1 = None
        if name == "NK1":
            map_next_of_kin(ctx, seg)
        elif name == "AL1":
            map_allergy(ctx, seg)
        elif name == "DG1":
            map_condition(ctx, seg)
        elif name == "PR1":
            map_procedure(ctx, seg)
        elif name == "RF1":
            map_referral(ctx, seg)
        elif name == "DB1":
            map_disability_identifier(ctx, seg)
        elif name == "OBX":
            map_observation(ctx, seg)
        elif name == "PDA":
            map_death_details(ctx, seg)
        elif name == "ACC":
            map_accident(ctx, seg)
        elif name == "IN1":
            pending_in1 = seg
        elif name == "IN2" and pending_in1 is not None:
            map_coverage(ctx, pending_in1, seg)
            pending_in1 = None
        elif name == "GT1":
            guarantors.append(seg)
    if pending_in1 is not None:
        map_coverage(ctx, pending_in1)
    if guarantors or ctx.message.first("PID") is not None:
        map_account(ctx, guarantors)


@handles(
    "ADT",
    *(["A18", "A30", "A34", "A35", "A36", "A39", "A40", "A41", "A42", "A46", "A47", "A48", "A49"]),
    segments="MSH PID PD1 MRG",
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


@handles("ADT", "A24", "A37", segments="MSH PID")
def link(ctx: Context) -> None:
    """A24 links two patient records (Patient.link "seealso" both ways); A37 unlinks them (both
    records, no link)."""
    pids = ctx.message.all("PID")
    if not pids:
        ctx.require_segment("PID", "Patient")
    urls = [map_patient(ctx, pid) for pid in pids]
    if ctx.message.trigger_event.upper() == "A24" and len(urls) == 2 and urls[0] != urls[1]:
        for this, other in ((urls[0], urls[1]), (urls[1], urls[0])):
            patient = ctx.resource(this)
            patient.setdefault("link", []).append(
                {"other": {"reference": other}, "type": "seealso"}
            )
