"""ORU^R01 (and ORU^R30-R32): per patient, per order: DiagnosticReport (OBR) with one
Observation per OBX; NTE after an OBX becomes its note."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.codecs import hl7v2
from adapters.mapping.context import Context
from adapters.mapping.registry import handles
from adapters.mapping.segments import report as reports
from adapters.mapping.segments.document import map_document
from adapters.mapping.segments.encounter import has_visit, map_encounter
from adapters.mapping.segments.financial import map_account, map_charges
from adapters.mapping.segments.observation import (
    TEXT_TYPES,
    ed_attachment,
    has_code,
    map_observation,
    observation_text,
    text_attachment,
)
from adapters.mapping.segments.order import map_service_request
from adapters.mapping.segments.patient import map_patient
from adapters.mapping.segments.specimen import map_specimen


@dataclass
class ResultGroup:
    """One OBR with what belongs to it (ORC before it, OBX/NTE/SPM after it)."""

    obr: hl7v2.Segment | None
    orc: hl7v2.Segment | None = None
    observations: list[tuple[hl7v2.Segment, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    specimens: list[hl7v2.Segment] = field(default_factory=list)
    tq1: hl7v2.Segment | None = None


def note_text(ctx: Context, nte: hl7v2.Segment) -> str:
    """NTE-3 (repeating FT) as one text."""
    raw = nte[3]
    lines = [hl7v2.unescape(r, ctx.enc) for r in raw.split(ctx.enc.repetition)]
    return "\n".join(line for line in lines if line.strip() and line.strip() != '""').strip()


@handles(
    "ORU",
    "R01",
    "R30",
    "R31",
    "R32",
    segments="MSH PID PD1 PV1 PV2 ORC:ServiceRequest OBR TQ1:ServiceRequest OBX TXA"
    " NTE:ServiceRequest NTE:Observation SPM FT1 BLG",
)
def oru(ctx: Context) -> None:
    ctx.require_segment("PID", "Patient")
    ctx.require_segment("OBR", "DiagnosticReport")
    for patient_segments in _patients(ctx.message):
        _patient_result(ctx, patient_segments)


def _patients(message: hl7v2.Message) -> list[list[hl7v2.Segment]]:
    """Split the body at each PID (an ORU may carry results for several patients)."""
    groups: list[list[hl7v2.Segment]] = []
    for seg in message.segments[1:]:
        if seg.name == "PID" or not groups:
            groups.append([])
        groups[-1].append(seg)
    return [g for g in groups if any(s.name == "PID" for s in g)]


@handles(
    "OUL",
    "R22",
    "R23",
    "R24",
    segments="MSH PID PD1 PV1 SPM OBX OBR ORC:ServiceRequest TQ1:ServiceRequest NTE:ServiceRequest"
    " NTE:Observation",
)
def oul(ctx: Context) -> None:
    """OUL: lab results as ORU gives them, but ORC follows its OBR, and in R22/R23 the
    specimen (SPM, with its own OBX) comes before the orders done on it."""
    ctx.require_segment("PID", "Patient")
    ctx.require_segment("OBR", "DiagnosticReport")
    specimen_first = ctx.message.trigger_event.upper() in ("R22", "R23")
    for patient_segments in _patients(ctx.message):
        _patient_result(ctx, patient_segments, orc_after_obr=True, specimen_first=specimen_first)


def _patient_result(
    ctx: Context,
    segments: list[hl7v2.Segment],
    *,
    orc_after_obr: bool = False,
    specimen_first: bool = False,
) -> None:
    pid = segments[0]
    ctx.patient = ctx.encounter = ctx.patient_key = ctx.encounter_key = None
    pd1 = next((s for s in segments if s.name == "PD1"), None)
    map_patient(ctx, pid, pd1)
    pv1 = next((s for s in segments if s.name == "PV1"), None)
    if pv1 is not None and has_visit(ctx, pv1):
        pv2 = next((s for s in segments if s.name == "PV2"), None)
        map_encounter(ctx, pv1, pv2)

    loose: list[tuple[hl7v2.Segment, list[str]]] = []  # patient-level OBX before any OBR
    groups: list[ResultGroup] = []
    documents: list[hl7v2.Segment] = []
    pending_orc = None
    specimen: list[hl7v2.Segment] = []  # specimen_first: the SPM the next orders were done on
    current: ResultGroup | None = None
    last_notes: list[str] | None = None
    for seg in segments[1:]:
        name = seg.name
        if name == "ORC" and orc_after_obr and current is not None and current.orc is None:
            current.orc = seg
            last_notes = None
        elif name == "ORC":
            pending_orc = seg
            last_notes = None
        elif name == "OBR":
            current = ResultGroup(seg, pending_orc, specimens=list(specimen))
            groups.append(current)
            pending_orc = None
            last_notes = current.notes
        elif name == "OBX":
            notes: list[str] = []
            (current.observations if current else loose).append((seg, notes))
            last_notes = notes
        elif name == "NTE":
            text = note_text(ctx, seg)
            if text and last_notes is not None:
                last_notes.append(text)
        elif name == "SPM" and specimen_first:
            specimen, current, last_notes = [seg], None, None
        elif name == "SPM" and current:
            current.specimens.append(seg)
            last_notes = None
        elif name == "TQ1" and current and current.tq1 is None:
            current.tq1 = seg
        elif name == "TXA":
            documents.append(seg)

    # A document header (TXA) in a result: its body is the code-less OBX sent before any
    # order (IG TXA -> DocumentReference), the other loose OBX are patient observations.
    bodies = [obx for obx, _ in loose if not has_code(ctx, obx)] if documents else []
    for txa in documents:
        map_document(ctx, txa, bodies)
    for obx, notes in loose:
        if obx not in bodies:
            map_observation(ctx, obx, notes=notes)
    for group in groups:
        _result_group(ctx, group)
    map_charges(ctx, segments)
    map_account(ctx, [], pid)


def _result_group(ctx: Context, group: ResultGroup) -> None:
    """One order's results: ServiceRequest (ORC/OBR, notes after OBR), Specimens (SPM), one
    Observation per OBX, then the DiagnosticReport that lists them."""
    obr = group.obr
    placer, filler = reports.order_identifiers(ctx, obr, group.orc)
    key = reports.order_key(placer, filler)
    effective = ctx.quiet_datetime(obr, 7) if obr else None
    done = ctx.value(obr, 25).upper() in ("F", "C") if obr else False
    request = map_service_request(
        ctx,
        group.orc,
        obr,
        notes=group.notes,
        tq1=group.tq1,
        default_status="completed" if done else "active",
        intent="filler-order",  # the order as the lab that fills it reports it
    )
    specimens = [s for s in (map_specimen(ctx, spm) for spm in group.specimens) if s]
    specimen = specimens[0] if len(specimens) == 1 else None
    results = []
    presented: list[dict] = []
    lines: list[str] = []
    for obx, notes in group.observations:
        if not has_code(ctx, obx) and _report_body(ctx, obx, lines, presented):
            continue
        url = map_observation(
            ctx,
            obx,
            notes=notes,
            order_key=key,
            effective=effective,
            specimen=specimen,
            based_on=request,
        )
        if url:
            results.append(url)
    if lines:
        presented.insert(0, text_attachment("\n".join(lines)))
    reports.map_report(
        ctx, obr, group.orc, results, specimens=specimens, based_on=request, presented=presented
    )


def _report_body(ctx: Context, obx: hl7v2.Segment, lines: list[str], presented: list) -> bool:
    """An OBX without a code cannot be an Observation; text (TX/FT/ST) or ED in a report is its
    body, so it goes to DiagnosticReport.presentedForm instead of being dropped."""
    vtype = ctx.value(obx, 2).upper()
    if vtype in TEXT_TYPES:
        lines.append(observation_text(ctx, obx))
    elif vtype == "ED" and ctx.reps(obx, 5):
        presented.append(
            ed_attachment(ctx, obx, ctx.reps(obx, 5)[0], "DiagnosticReport.presentedForm")
        )
    else:
        return False
    ctx.issue(
        obx,
        3,
        "",
        "DiagnosticReport.presentedForm",
        "OBX-3 is empty: this text is part of the report body, not an Observation",
        severity="information",
    )
    return True
