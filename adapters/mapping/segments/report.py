"""OBR (+ ORC) -> DiagnosticReport: the report header that lists its Observations."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref, search_value
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors


def order_identifiers(
    ctx: Context, obr: hl7v2.Segment | None, orc: hl7v2.Segment | None
) -> tuple[dict | None, dict | None]:
    """(placer, filler) order numbers: OBR-2/OBR-3, else ORC-2/ORC-3 (EI)."""
    placer = filler = None
    if obr is not None:
        placer = dt.ei(ctx.comps(obr, 2), "PLAC")
        filler = dt.ei(ctx.comps(obr, 3), "FILL")
    if orc is not None:
        placer = placer or dt.ei(ctx.comps(orc, 2), "PLAC")
        filler = filler or dt.ei(ctx.comps(orc, 3), "FILL")
    return ctx.scoped(placer), ctx.scoped(filler)


def group_identifier(ctx: Context, orc: hl7v2.Segment | None) -> dict | None:
    """ORC-4 placer group number as an identifier of type PGN (the order's requisition too)."""
    return ctx.scoped(dt.ei(ctx.comps(orc, 4), "PGN")) if orc is not None else None


def order_key(placer: dict | None, filler: dict | None) -> str | None:
    chosen = filler or placer
    return search_value(chosen) if chosen else None


@fields(
    "OBR",
    "DiagnosticReport",
    ("OBR-2", "DiagnosticReport.identifier", "EI -> Identifier, type PLAC (else ORC-2)"),
    ("OBR-3", "DiagnosticReport.identifier", "EI -> Identifier, type FILL (else ORC-3)"),
    ("OBR-4", "DiagnosticReport.code", "CWE -> CodeableConcept (required: empty fails)"),
    ("OBR-7", "DiagnosticReport.effective", "DTM -> effectiveDateTime (period start with OBR-8)"),
    (
        "OBR-8",
        "DiagnosticReport.effective.end",
        "DTM -> effectivePeriod.end",
        "OBR-7 and OBR-8 valid dates",
    ),
    ("OBR-22", "DiagnosticReport.issued", "DTM -> instant", "a valid time"),
    ("OBR-24", "DiagnosticReport.category", "table 0074 -> CodeableConcept"),
    ("OBR-25", "DiagnosticReport.status", "table 0123 -> status (else unknown)"),
    ("OBR-32", "DiagnosticReport.resultsInterpreter", "NDL (CNN) -> Practitioner"),
)
def map_report(
    ctx: Context,
    obr: hl7v2.Segment,
    orc: hl7v2.Segment | None,
    results: list[str],
    *,
    specimens: list[str] | None = None,
    based_on: str | None = None,
    presented: list[dict] | None = None,
) -> str:
    ctx.segment = obr
    report: dict = {"resourceType": "DiagnosticReport"}
    placer, filler = order_identifiers(ctx, obr, orc)
    identifiers = [i for i in (filler, placer, group_identifier(ctx, orc)) if i]
    if identifiers:
        report["identifier"] = identifiers
    if based_on:
        report["basedOn"] = [ref(based_on)]

    status_code = ctx.value(obr, 25)
    status = cs.RESULT_STATUS.get(status_code.upper())
    if status is None:
        status = "unknown"
        ctx.issue(
            obr,
            25,
            status_code,
            "DiagnosticReport.status",
            "empty or not a code of table 0123; status unknown",
            severity="warning" if status_code else "information",
        )
    report["status"] = status

    section = dt.cwe(ctx.comps(obr, 24), cs.V2 + "0074")
    if section:
        report["category"] = [section]
    code = dt.cwe(ctx.comps(obr, 4))
    if code is None:
        raise ctx.fail(
            obr,
            4,
            "",
            "DiagnosticReport.code",
            "OBR-4 (universal service identifier) is empty; a report needs a code",
        )
    report["code"] = code
    if ctx.patient:
        report["subject"] = ref(ctx.patient)
    if ctx.encounter:
        report["encounter"] = ref(ctx.encounter)

    start = ctx.datetime(obr, 7, "DiagnosticReport.effectiveDateTime")
    end = ctx.datetime(obr, 8, "DiagnosticReport.effectivePeriod.end")
    if start and end:
        report["effectivePeriod"] = {"start": start, "end": end}
    elif start:
        report["effectiveDateTime"] = start
    issued = ctx.dtm(obr, 22, "DiagnosticReport.issued")
    if issued:
        report["issued"] = ctx.instant_text(issued)

    interpreters = []
    for f in ctx.reps(obr, 32):  # NDL: the person is CNN in subcomponents of component 1
        person = actors.practitioner(ctx, _cnn_as_xcn(f))
        if person:
            interpreters.append(person)
    if interpreters:
        report["resultsInterpreter"] = interpreters
    if specimens:
        report["specimen"] = [ref(s) for s in specimens]
    if results:
        report["result"] = [ref(r) for r in results]
    if presented:
        report["presentedForm"] = presented
    identity = filler or placer
    return ctx.add(report, identity=identity)


def _cnn_as_xcn(ndl: dt.Comps) -> dt.Comps:
    """NDL-1 is a CNN held in subcomponents (id & family & given & ...): read it as an XCN."""
    return ndl.sub(1)
