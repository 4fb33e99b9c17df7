"""SCH (+ TQ1, NTE) with its resources AIS/AIG/AIL/AIP -> Appointment."""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors

# Events that fix the status whatever SCH-25 says.
EVENT_STATUS = {"S15": "cancelled", "S16": "cancelled", "S17": "entered-in-error", "S26": "noshow"}
PARTICIPANT_STATUS = {
    "Booked": "accepted",
    "Confirmed": "accepted",
    "Cancelled": "declined",
    "Pending": "needs-action",
    "Waitlist": "needs-action",
}
PARTICIPATION = (
    "Booked/Confirmed -> accepted, Cancelled -> declined, Pending/Waitlist -> needs-action"
)
MINUTES = {
    "MIN": 1,
    "M": 1,
    "MINUTES": 1,
    "S": 1 / 60,
    "SEC": 1 / 60,
    "H": 60,
    "HR": 60,
    "HOURS": 60,
    "D": 1440,
    "DAY": 1440,
}


@fields(
    "SCH",
    "Appointment",
    ("SCH-1", "Appointment.identifier", "EI -> placer Identifier"),
    ("SCH-2", "Appointment.identifier", "EI -> filler Identifier"),
    ("SCH-7", "Appointment.reasonCode", "CWE (table 0276) -> CodeableConcept"),
    ("SCH-8", "Appointment.appointmentType", "CWE (table 0277) -> CodeableConcept"),
    (
        "SCH-9",
        "Appointment.minutesDuration",
        "NM in SCH-10 units -> whole minutes",
        "a number, a minute or more",
    ),
    (
        "SCH-10",
        "Appointment.minutesDuration",
        "units (S, MIN, H, D; minutes when empty) of SCH-9",
        "SCH-9 is a number, a minute or more",
    ),
    (
        "SCH-11",
        "Appointment.start",
        "TQ start (component 4) -> instant; end (5) or the SCH-9 duration -> end; a start"
        " alone -> requestedPeriod",
        "no TQ1-7, a valid start with an end or a duration",
    ),
    (
        "SCH-25",
        "Appointment.status",
        "filler status (table 0278) -> status, else booked; S15/S16 cancelled, S17"
        " entered-in-error, S26 noshow whatever it says",
    ),
)
@fields(
    "NTE",
    "Appointment",
    (
        "NTE-3",
        "Appointment.comment",
        "FT -> text, the notes joined by lines",
        "after SCH or an AIS/AIG/AIL/AIP",
    ),
)
@fields(
    "TQ1",
    "Appointment",
    ("TQ1-7", "Appointment.start", "DTM -> instant", "a valid time, with an end or duration"),
    ("TQ1-8", "Appointment.end", "DTM -> instant", "a valid time after a valid TQ1-7"),
)
@fields(
    "AIS",
    "Appointment",
    ("AIS-3", "Appointment.serviceType", "CWE -> CodeableConcept, each repetition"),
    (
        "AIS-4",
        "Appointment.start",
        "DTM -> instant (end from AIS-7/8 duration)",
        "no TQ1-7 or SCH-11 start",
    ),
)
@fields(
    "AIG",
    "Appointment",
    ("AIG-3", "Appointment.participant.actor.display", "CWE -> display"),
    ("AIG-4", "Appointment.participant.type", "CWE -> CodeableConcept"),
)
@fields(
    "AIL",
    "Appointment",
    ("AIL-3", "Appointment.participant.actor", "PL -> Location", "a location"),
    ("AIL-4", "Appointment.participant.type", "CWE (table 0305) -> CodeableConcept"),
    ("AIL-12", "Appointment.participant.status", PARTICIPATION, "a location"),
)
@fields(
    "AIP",
    "Appointment",
    ("AIP-3", "Appointment.participant.actor", "XCN -> Practitioner", "an id or a name"),
    ("AIP-4", "Appointment.participant.type", "CWE -> CodeableConcept"),
    ("AIP-12", "Appointment.participant.status", PARTICIPATION),
)
def map_appointment(
    ctx: Context,
    sch: hl7v2.Segment,
    *,
    tq1: hl7v2.Segment | None,
    notes: list[str],
    resources: list[tuple[hl7v2.Segment, list[str]]],
    event: str,
) -> str:
    """SCH: placer/filler appointment id 1/2 -> identifier, reason 7 -> reasonCode, type 8 ->
    appointmentType, duration 9/10 -> minutesDuration, timing 11 (or TQ1-7/8, or the first
    AIS/AIL/AIP start + duration) -> start/end, filler status 25 (or the event) -> status;
    AIS-3 -> serviceType; the patient, AIP (Practitioner), AIL (Location) and AIG (display)
    -> participant."""
    ctx.segment = sch
    appt: dict = {"resourceType": "Appointment"}
    placer = ctx.scoped(dt.ei(ctx.comps(sch, 1), "PLAC"))
    filler = ctx.scoped(dt.ei(ctx.comps(sch, 2), "FILL"))
    identifiers = [i for i in (filler, placer) if i]
    if identifiers:
        appt["identifier"] = identifiers
    appt["status"] = _status(ctx, sch, event)
    services = []
    for seg, _ in resources:
        if seg.name == "AIS":
            services += [c for c in (dt.cwe(f) for f in ctx.reps(seg, 3)) if c]
    if services:
        appt["serviceType"] = services
    kind = dt.cwe(ctx.comps(sch, 8), cs.V2 + "0277")
    if kind:
        appt["appointmentType"] = kind
    reason = dt.cwe(ctx.comps(sch, 7), cs.V2 + "0276")
    if reason:
        appt["reasonCode"] = [reason]
    ctx.segment = sch
    minutes = _minutes(ctx.value(sch, 9), ctx.value(sch, 10))
    start, end = _when(ctx, sch, tq1, resources, minutes)
    if start and end:
        appt["start"], appt["end"] = start, end
    elif start:
        # FHIR wants start and end together (app-2); a start alone is what was asked for.
        appt["requestedPeriod"] = [{"start": start}]
    if minutes and minutes >= 1:
        appt["minutesDuration"] = int(round(minutes))
    comments = list(notes)
    for _, resource_notes in resources:
        comments += resource_notes
    if comments:
        appt["comment"] = "\n".join(comments)
    appt["participant"] = _participants(ctx, resources)
    if not appt["participant"]:
        raise ctx.fail(
            sch,
            None,
            "",
            "Appointment.participant",
            "the appointment names no patient (PID) and no resource (AIP/AIL/AIG)",
        )
    identity = filler or placer
    return ctx.add(appt, identity=identity)


def _status(ctx: Context, sch: hl7v2.Segment, event: str) -> str:
    if event in EVENT_STATUS:
        return EVENT_STATUS[event]
    code = ctx.value(sch, 25)
    if code:
        status = cs.APPOINTMENT_STATUS.get(code.capitalize())
        if status:
            return status
        ctx.issue(
            sch,
            25,
            code,
            "Appointment.status",
            "not a code of table 0278; booked",
            severity="information",
        )
    return "booked"


def _minutes(amount: str, units: str) -> float | None:
    if not amount:
        return None
    try:
        value = float(amount)
    except ValueError:
        return None
    unit = (units.split("^")[0] or "MIN").upper()
    return value * MINUTES.get(unit, 1)


def _when(ctx, sch, tq1, resources, minutes) -> tuple[str | None, str | None]:
    start = end = None
    if tq1 is not None:
        start = ctx.dtm(tq1, 7, "Appointment.start")
        end = ctx.dtm(tq1, 8, "Appointment.end")
    if start is None:
        start = ctx.attempt(sch, 11, "Appointment.start", lambda f: dt.parse_dtm(f.c(4)))
        end = ctx.attempt(sch, 11, "Appointment.end", lambda f: dt.parse_dtm(f.c(5)))
    if start is None:
        for seg, _ in resources:
            n = 4 if seg.name == "AIS" else 6
            start = ctx.dtm(seg, n, "Appointment.start")
            if start is not None:
                m = _minutes(ctx.value(seg, n + 3), ctx.value(seg, n + 4))
                minutes = minutes or m
                break
    start_text = ctx.instant_text(start) if start else None
    end_text = ctx.instant_text(end) if end else None
    if start_text and not end_text and minutes:
        end_text = _plus_minutes(start_text, minutes)
    return start_text, end_text


def _plus_minutes(instant: str, minutes: float) -> str | None:
    try:
        moment = datetime.fromisoformat(instant)
    except ValueError:
        return None
    return (moment + timedelta(minutes=minutes)).isoformat()


def _participants(ctx: Context, resources) -> list[dict]:
    out = []
    if ctx.patient:
        out.append({"actor": ref(ctx.patient), "status": "accepted"})
    for seg, _ in resources:
        ctx.segment = seg
        actor = None
        if seg.name == "AIP":
            actor = actors.practitioner(ctx, ctx.comps(seg, 3))
            role = dt.cwe(ctx.comps(seg, 4))
        elif seg.name == "AIL":
            actor = actors.location(ctx, ctx.comps(seg, 3))
            role = dt.cwe(ctx.comps(seg, 4), cs.V2 + "0305")
        elif seg.name == "AIG":
            resource = dt.cwe(ctx.comps(seg, 3))
            if resource:
                actor = {"display": resource.get("text") or _display(resource)}
            role = dt.cwe(ctx.comps(seg, 4))
        else:
            continue
        if actor is None:
            continue
        participant: dict = {}
        if role:
            participant["type"] = [role]
        participant["actor"] = actor
        participant["status"] = PARTICIPANT_STATUS.get(ctx.value(seg, 12).capitalize(), "accepted")
        out.append(participant)
    return out


def _display(concept: dict) -> str:
    coding = (concept.get("coding") or [{}])[0]
    return coding.get("display") or coding.get("code") or "resource"
