"""Patient care, billing, referral and query answers.

PPR^PC1-PC3: problems (PRB) -> Conditions, their OBX -> Observations. BAR^P01/P02/P05/P06/
P10/P12: the account's patient, visit, diagnoses, procedures, insurance and guarantors.
REF^I12-I15: the referral (RF1) with the patient's details. RSP^K22 and ADR^A19 answer a
patient query: a searchset Bundle of the Patients found.
"""

from __future__ import annotations

from adapters.mapping.context import Context
from adapters.mapping.messages.adt import map_patient_details
from adapters.mapping.messages.common import map_subject
from adapters.mapping.registry import handles
from adapters.mapping.segments.observation import map_observation
from adapters.mapping.segments.patient import map_patient
from adapters.mapping.segments.problem import map_problem


@handles("PPR", "PC1", "PC2", "PC3", segments="MSH PID PV1 PRB OBX")
def ppr(ctx: Context) -> None:
    map_subject(ctx)
    event = ctx.message.trigger_event.upper()
    problems = ctx.message.all("PRB")
    if not problems:
        raise ctx.fail(
            None, None, "", "Condition", "a PPR message needs a PRB segment", segment_name="PRB"
        )
    for seg in ctx.message.segments[1:]:
        if seg.name == "PRB":
            map_problem(ctx, seg, event)
        elif seg.name == "OBX":
            map_observation(ctx, seg)


@handles(
    "BAR",
    "P01",
    "P02",
    "P05",
    "P06",
    "P10",
    "P12",
    segments="MSH PID PD1 PV1 PV2 DG1 PR1 IN1 IN2 GT1 PDA ACC",
)
def bar(ctx: Context) -> None:
    """Each visit group's details; an account purged (P02) or ended (P06) is inactive."""
    map_subject(ctx)
    map_patient_details(ctx, ctx.message.segments[1:])
    if ctx.message.trigger_event.upper() in ("P02", "P06"):
        for entry in ctx.entries:
            if entry["resource"]["resourceType"] == "Account":
                entry["resource"]["status"] = "inactive"


@handles(
    "REF", "I12", "I13", "I14", "I15", segments="MSH PID PD1 PV1 RF1 DG1 PR1 OBX IN1 GT1 PDA ACC"
)
def ref_(ctx: Context) -> None:
    map_subject(ctx)
    if ctx.message.first("RF1") is None:
        raise ctx.fail(
            None, None, "", "ServiceRequest", "a REF message needs an RF1", segment_name="RF1"
        )
    map_patient_details(ctx, ctx.message.segments[1:])


@handles("RSP", "K22", segments="MSH PID")
@handles("ADR", "A19", segments="MSH PID")
def patient_query_answer(ctx: Context) -> None:
    """Every PID answered is a match (no PID: nothing was found, an empty searchset)."""
    ctx.bundle_type = "searchset"
    for seg in ctx.message.segments[1:]:
        if seg.name == "PID":
            ctx.patient = ctx.patient_key = None
            map_patient(ctx, seg)
