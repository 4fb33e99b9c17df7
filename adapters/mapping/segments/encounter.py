"""PV1 (+ PV2) -> Encounter."""

from __future__ import annotations

from datetime import datetime

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref, search_value
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors

# Encounter.status follows the IG: finished when PV1-45 (discharge) is valued, else from the
# patient class (table-hl70004-to-encounter-status: P -> planned, the others in-progress).
# Events that admit, transfer, cancel, pre-admit or undo a discharge say more than PV1 does
# and win (an A01 for a pre-admitted class P patient is an admission: in progress).
EVENT_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A05": "planned",
    "A11": "cancelled",
    "A13": "in-progress",
    "A14": "planned",
    "A27": "cancelled",
    "A38": "cancelled",
}
CLASS_STATUS = {"P": "planned", "N": "unknown", "U": "unknown"}

PARTICIPANTS = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)


def has_visit(ctx: Context, pv1: hl7v2.Segment | None) -> bool:
    """Whether PV1 describes a visit (A28/A31 often send ``PV1||N``: no encounter)."""
    if pv1 is None:
        return False
    if any(ctx.value(pv1, n) for n in (3, 7, 19, 44, 45)):
        return True
    return ctx.value(pv1, 2) not in ("", "N")


@fields(
    "PV1",
    "Encounter",
    ("PV1-2", "Encounter.class", "patient class (table 0004) -> v3 ActCode"),
    ("PV1-3", "Encounter.location", "PL -> Location (status active)"),
    ("PV1-4", "Encounter.type", "CWE (table 0007) -> CodeableConcept"),
    ("PV1-5", "Encounter.hospitalization.preAdmissionIdentifier", "CX -> Identifier"),
    ("PV1-6", "Encounter.location", "PL (prior location) -> Location (status completed)"),
    ("PV1-7", "Encounter.participant", "XCN -> Practitioner, type ATND"),
    ("PV1-8", "Encounter.participant", "XCN -> Practitioner, type REF"),
    ("PV1-9", "Encounter.participant", "XCN -> Practitioner, type CON"),
    ("PV1-10", "Encounter.serviceType", "CWE (table 0069) -> CodeableConcept"),
    ("PV1-11", "Encounter.location", "PL (temporary location) -> Location (status active)"),
    ("PV1-13", "Encounter.hospitalization.reAdmission", "CWE (table 0092) -> CodeableConcept"),
    ("PV1-14", "Encounter.hospitalization.admitSource", "CWE (table 0023) -> CodeableConcept"),
    (
        "PV1-15",
        "Encounter.hospitalization.specialArrangement",
        "CWE (table 0009) -> CodeableConcept, each repetition",
    ),
    ("PV1-17", "Encounter.participant", "XCN -> Practitioner, type ADM"),
    ("PV1-19", "Encounter.identifier", "CX -> Identifier; the identity of the conditional update"),
    (
        "PV1-36",
        "Encounter.hospitalization.dischargeDisposition",
        "CWE (table 0112) -> CodeableConcept",
    ),
    (
        "PV1-37",
        "Encounter.hospitalization.destination.display",
        "DLD (discharged to location) -> display",
    ),
    (
        "PV1-38",
        "Encounter.hospitalization.dietPreference",
        "CWE (table 0114) -> CodeableConcept",
    ),
    ("PV1-42", "Encounter.location", "PL (pending location) -> Location (status planned)"),
    (
        "PV1-43",
        "Encounter.location",
        "PL (prior temporary location) -> Location (status completed)",
    ),
    ("PV1-44", "Encounter.period.start", "DTM -> dateTime", "a valid date/time"),
    ("PV1-45", "Encounter.period.end", "DTM -> dateTime", "a valid date/time"),
    ("PV1-50", "Encounter.identifier", "CX (alternate visit id) -> Identifier"),
)
@fields(
    "PV2",
    "Encounter",
    ("PV2-1", "Encounter.location", "PL -> Location (status planned)", "PV1 describes a visit"),
    ("PV2-3", "Encounter.reasonCode", "CWE -> CodeableConcept", "PV1 describes a visit"),
    ("PV2-11", "Encounter.length", "whole days -> Duration (d)", "PV1 describes a visit"),
    (
        "PV2-12",
        "Encounter.type.text",
        "visit description -> type text",
        "PV1 describes a visit, PV1-4 gives no type",
    ),
    (
        "PV2-25",
        "Encounter.priority",
        "CWE (table 0217) -> CodeableConcept",
        "PV1 describes a visit",
    ),
)
def map_encounter(
    ctx: Context, pv1: hl7v2.Segment, pv2: hl7v2.Segment | None = None, event: str = ""
) -> str:
    ctx.segment = pv1
    enc: dict = {"resourceType": "Encounter"}
    identifiers = _identifiers(ctx, pv1)
    identity = identifiers[0] if identifiers else None
    if identifiers:
        enc["identifier"] = identifiers
    enc["status"] = _status(ctx, pv1, event)
    enc["class"] = _class(ctx, pv1)

    admission_type = dt.cwe(ctx.comps(pv1, 4), cs.V2 + "0007")
    if admission_type:
        enc["type"] = [admission_type]
    service = dt.cwe(ctx.comps(pv1, 10), cs.V2 + "0069")
    if service:
        enc["serviceType"] = service
    if pv2 is not None:
        priority = dt.cwe(ctx.comps(pv2, 25), cs.V2 + "0217")
        if priority:
            enc["priority"] = priority
    if ctx.patient:
        enc["subject"] = ref(ctx.patient)

    participants = _participants(ctx, pv1)
    if participants:
        enc["participant"] = participants
    period = _period(ctx, pv1)
    if period:
        enc["period"] = period

    if pv2 is not None:
        ctx.segment = pv2
        _pv2(ctx, pv2, enc)
        ctx.segment = pv1

    hospitalization = _hospitalization(ctx, pv1)
    if hospitalization:
        enc["hospitalization"] = hospitalization

    locations = _locations(ctx, pv1, pv2)
    if locations:
        enc["location"] = locations

    key = None
    if identity is None:
        # No visit number: the same patient admitted at the same time is the same visit.
        patient = ctx.resource(ctx.patient) if ctx.patient else None
        pid_ids = (patient or {}).get("identifier") or []
        admit = ctx.value(pv1, 44)
        if pid_ids and admit:
            key = f"visit:{search_value(pid_ids[0])}|{admit}"
    full_url = ctx.add(enc, identity=identity, key=key, global_key=key is not None)
    if ctx.encounter is None:
        ctx.encounter = full_url
        ctx.encounter_key = ctx.key_of(full_url)
    return full_url


def _identifiers(ctx: Context, pv1: hl7v2.Segment) -> list[dict]:
    """PV1-19 visit number (type VN), then PV1-50 alternate visit id; the first is the
    Encounter's identity."""
    identifiers = []
    visit = dt.cx(ctx.comps(pv1, 19))
    if visit:
        visit.setdefault("type", dt.identifier_type("VN"))
        identifiers.append(visit)
    alternate = dt.cx(ctx.comps(pv1, 50))
    if alternate:
        identifiers.append(alternate)
    return identifiers


def _status(ctx: Context, pv1: hl7v2.Segment, event: str) -> str:
    patient_class = ctx.value(pv1, 2).upper()
    if event in EVENT_STATUS:
        return EVENT_STATUS[event]
    if ctx.value(pv1, 45):
        return "finished"
    return CLASS_STATUS.get(patient_class, "in-progress") if patient_class else "unknown"


def _participants(ctx: Context, pv1: hl7v2.Segment) -> list[dict]:
    """PV1-7/8/9/17 attending, referring, consulting, admitting doctors."""
    participants = []
    for n, code, display in PARTICIPANTS:
        role = {"coding": [{"system": cs.V3_PARTICIPATION, "code": code, "display": display}]}
        for person in actors.practitioners(ctx, pv1, n):
            participants.append({"type": [role], "individual": person})
    return participants


def _period(ctx: Context, pv1: hl7v2.Segment) -> dict:
    """PV1-44 admit and PV1-45 discharge; a discharge before the admission is left out."""
    start = ctx.dtm(pv1, 44, "Encounter.period.start")
    end = ctx.dtm(pv1, 45, "Encounter.period.end")
    period = {}
    if start:
        period["start"] = ctx.datetime_text(start)
    if end:
        period["end"] = ctx.datetime_text(end)
        if "start" in period and _before(period["end"], period["start"]):
            ctx.issue(
                pv1,
                45,
                ctx.value(pv1, 45),
                "Encounter.period.end",
                "discharge is before admission; left out",
            )
            del period["end"]
    return period


# PV1 location fields and the Encounter.location status each gives.
LOCATION_FIELDS = (
    (3, "active"),
    (11, "active"),
    (6, "completed"),
    (43, "completed"),
    (42, "planned"),
)


def _locations(ctx: Context, pv1: hl7v2.Segment, pv2: hl7v2.Segment | None) -> list[dict]:
    locations = []
    for n, status in LOCATION_FIELDS:
        place = actors.location(ctx, ctx.comps(pv1, n))
        if place:
            locations.append({"location": place, "status": status})
    pending = actors.location(ctx, ctx.comps(pv2, 1)) if pv2 is not None else None
    if pending:  # PV2-1 prior pending location: where the patient is going
        locations.append({"location": pending, "status": "planned"})
    return locations


def _before(a: str, b: str) -> bool:
    """Whether FHIR dateTime ``a`` is before ``b`` (zones respected; dates compare as text)."""
    if "T" in a and "T" in b:
        try:
            return datetime.fromisoformat(a) < datetime.fromisoformat(b)
        except ValueError:
            return False
    return a[:10] < b[:10]


def _class(ctx: Context, pv1: hl7v2.Segment) -> dict:
    code = ctx.value(pv1, 2)
    if code in cs.PATIENT_CLASS:
        v3, display = cs.PATIENT_CLASS[code]
        return {"system": cs.V3_ACT_CODE, "code": v3, "display": display}
    if code in cs.PATIENT_CLASS_V2:
        return cs.v2_coding("0004", code, cs.PATIENT_CLASS_V2[code])
    # Encounter.class is required in R4: say it is unknown rather than guess.
    if code:
        ctx.issue(pv1, 2, code, "Encounter.class", "not a code of table 0004; class unknown")
    return {"system": cs.V3_NULL_FLAVOR, "code": "UNK", "display": "unknown"}


def _hospitalization(ctx: Context, pv1: hl7v2.Segment) -> dict:
    h: dict = {}
    pre = dt.cx(ctx.comps(pv1, 5))
    if pre:
        h["preAdmissionIdentifier"] = pre
    source = dt.cwe(ctx.comps(pv1, 14), cs.V2 + "0023")
    if source:
        h["admitSource"] = source
    readmission = dt.cwe(ctx.comps(pv1, 13), cs.V2 + "0092")
    if readmission:
        h["reAdmission"] = readmission
    diet = dt.cwe(ctx.comps(pv1, 38), cs.V2 + "0114")
    if diet:
        h["dietPreference"] = [diet]
    arrangements = [c for c in (dt.cwe(f, cs.V2 + "0009") for f in ctx.reps(pv1, 15)) if c]
    if arrangements:
        h["specialArrangement"] = arrangements
    disposition = dt.cwe(ctx.comps(pv1, 36), cs.V2 + "0112")
    if disposition:
        h["dischargeDisposition"] = disposition
    destination = ctx.comps(pv1, 37)
    if destination.c(1) or destination.c(2):
        h["destination"] = {"display": destination.c(2) or destination.c(1)}
    return h


def _pv2(ctx: Context, pv2: hl7v2.Segment, enc: dict) -> None:
    """PV2-3 admit reason -> reasonCode, PV2-11 actual length of stay -> length (days),
    PV2-12 visit description -> Encounter.type text when nothing else names the type."""
    reason = dt.cwe(ctx.comps(pv2, 3))
    if reason:
        enc["reasonCode"] = [reason]
    days = ctx.value(pv2, 11)
    if days:
        if days.isdigit():
            enc["length"] = {"value": int(days), "unit": "days", "system": cs.UCUM, "code": "d"}
        else:
            ctx.issue(pv2, 11, days, "Encounter.length", "not a whole number of days; left out")
    description = ctx.value(pv2, 12)
    if description and "type" not in enc:
        enc["type"] = [{"text": description}]
