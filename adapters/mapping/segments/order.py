"""ORC (+ OBR, TQ1) -> ServiceRequest: the order, in ORM/OML and behind every ORU report."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors
from adapters.mapping.segments.report import group_identifier, order_identifiers

PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "routine", "T": "urgent", "C": "urgent"}


def order_status(ctx: Context, orc: hl7v2.Segment | None, default: str) -> str:
    """ORC-5 (order status, table 0038) first, else ORC-1 (order control, table 0119)."""
    if orc is None:
        return default
    status = cs.ORDER_STATUS.get(ctx.value(orc, 5).upper())
    if status:
        return status
    control = ctx.value(orc, 1).upper()
    status = cs.ORDER_CONTROL_STATUS.get(control)
    if status:
        return status
    if control or ctx.value(orc, 5):
        ctx.issue(
            orc,
            5 if ctx.value(orc, 5) else 1,
            ctx.value(orc, 5) or control,
            "ServiceRequest.status",
            f"no status for this code; {default}",
            severity="information",
        )
    return default


@fields(
    "ORC",
    "ServiceRequest",
    (
        "ORC-1",
        "ServiceRequest.status",
        "order control (table 0119) -> status, when ORC-5 gives none",
    ),
    ("ORC-2", "ServiceRequest.identifier", "EI -> Identifier, type PLAC (OBR-2 first)"),
    ("ORC-3", "ServiceRequest.identifier", "EI -> Identifier, type FILL (OBR-3 first)"),
    ("ORC-4", "ServiceRequest.requisition", "EI -> Identifier, type PGN (also in identifier)"),
    ("ORC-5", "ServiceRequest.status", "order status (table 0038) -> status"),
    (
        "ORC-8",
        "ServiceRequest.basedOn",
        "EIP -> the parent ServiceRequest (placer, filler ids)",
        "a placer or filler id",
    ),
    ("ORC-9", "ServiceRequest.authoredOn", "DTM -> dateTime", "a valid date"),
    ("ORC-12", "ServiceRequest.requester", "XCN -> Practitioner", "an id or a name"),
)
@fields(
    "OBR",
    "ServiceRequest",
    ("OBR-2", "ServiceRequest.identifier", "EI -> Identifier, type PLAC"),
    ("OBR-3", "ServiceRequest.identifier", "EI -> Identifier, type FILL"),
    ("OBR-4", "ServiceRequest.code", "CWE -> CodeableConcept"),
    ("OBR-5", "ServiceRequest.priority", "S/A/R/P/T/C -> priority", "a known code, no TQ1-9"),
    ("OBR-16", "ServiceRequest.requester", "XCN -> Practitioner", "ORC-12 gives none"),
    (
        "OBR-27.4",
        "ServiceRequest.occurrence",
        "DTM -> occurrenceDateTime",
        "no TQ1-7, a valid date",
    ),
    ("OBR-27.6", "ServiceRequest.priority", "S/A/R/P/T/C -> priority", "a known code, no TQ1-9"),
    (
        "OBR-29",
        "ServiceRequest.basedOn",
        "EIP -> the parent ServiceRequest",
        "no ORC-8, a placer or filler id",
    ),
    ("OBR-31", "ServiceRequest.reasonCode", "CWE -> CodeableConcept, each repetition"),
    ("OBR-53", "ServiceRequest.identifier", "EI -> Identifier, type PLAC (alternate placer)"),
)
@fields(
    "TQ1",
    "ServiceRequest",
    ("TQ1-7", "ServiceRequest.occurrence", "DTM -> occurrenceDateTime", "a valid date"),
    ("TQ1-9", "ServiceRequest.priority", "S/A/R/P/T/C -> priority", "a known code"),
)
@fields(
    "NTE",
    "ServiceRequest",
    (
        "NTE-3",
        "ServiceRequest.note",
        "FT repetitions -> Annotation text",
        "after the order's ORC or OBR",
    ),
)
def map_service_request(
    ctx: Context,
    orc: hl7v2.Segment | None,
    obr: hl7v2.Segment | None,
    *,
    notes: list[str] | None = None,
    tq1: hl7v2.Segment | None = None,
    default_status: str = "active",
    specimens: list[str] | None = None,
    supporting: list[str] | None = None,
    reasons: list[dict] | None = None,
    intent: str = "order",
) -> str | None:
    """ORC/OBR: placer 2, filler 3 and OBR-53 alternate placer -> identifier, ORC-4 ->
    requisition (and identifier of type PGN), status ORC-5 /
    ORC-1, OBR-4 -> code, ORC-9 -> authoredOn, ORC-12 / OBR-16 -> requester, priority TQ1-9 /
    OBR-27.6 / OBR-5, TQ1-7 / OBR-27.4 -> occurrence, OBR-31 -> reasonCode, NTE -> note."""
    if not ctx.patient:
        return None
    ctx.segment = orc if orc is not None else obr
    request: dict = {"resourceType": "ServiceRequest"}
    placer, filler = order_identifiers(ctx, obr, orc)
    group = group_identifier(ctx, orc)
    alternate = ctx.scoped(dt.ei(ctx.comps(obr, 53), "PLAC")) if obr is not None else None
    identifiers = [i for i in (placer, filler, alternate, group) if i]
    if identifiers:
        request["identifier"] = identifiers
    if group:
        request["requisition"] = dict(group)
    request["status"] = order_status(ctx, orc, default_status)
    request["intent"] = intent
    priority = _priority(ctx, obr, tq1)
    if priority:
        request["priority"] = priority
    if obr is not None:
        code = dt.cwe(ctx.comps(obr, 4))
        if code:
            request["code"] = code
    request["subject"] = ref(ctx.patient)
    if ctx.encounter:
        request["encounter"] = ref(ctx.encounter)
    occurrence = _occurrence(ctx, obr, tq1)
    if occurrence:
        request["occurrenceDateTime"] = occurrence
    if orc is not None:
        authored = ctx.datetime(orc, 9, "ServiceRequest.authoredOn")
        if authored:
            request["authoredOn"] = authored
    requester = _requester(ctx, orc, obr)
    if requester:
        request["requester"] = requester
    reason_codes = list(reasons or [])
    if obr is not None:
        reason_codes += [r for r in (dt.cwe(f) for f in ctx.reps(obr, 31)) if r]
    if reason_codes:
        request["reasonCode"] = reason_codes
    parent = _parent_order(ctx, orc, obr, request["status"], intent)
    if parent:
        request["basedOn"] = [ref(parent)]
    if supporting:
        request["supportingInfo"] = [ref(s) for s in supporting]
    if specimens:
        request["specimen"] = [ref(s) for s in specimens]
    if notes:
        request["note"] = [{"text": n} for n in notes]
    identity = placer or filler
    return ctx.add(request, identity=identity)


# RF1-1 referral status (table 0283) -> ServiceRequest.status
REFERRAL_STATUS = {"A": "active", "P": "on-hold", "R": "revoked", "E": "revoked"}


@fields(
    "RF1",
    "ServiceRequest",
    ("RF1-1", "ServiceRequest.status", "A/P/R/E (table 0283) -> status, else unknown"),
    ("RF1-2", "ServiceRequest.priority", "S/A/R/P/T/C -> priority", "a known code"),
    ("RF1-3", "ServiceRequest.category", "CWE -> CodeableConcept"),
    ("RF1-6", "ServiceRequest.identifier", "EI -> Identifier (originating referral id)"),
    ("RF1-10", "ServiceRequest.reasonCode", "CWE -> CodeableConcept, each repetition"),
    ("RF1-11", "ServiceRequest.identifier", "EI -> Identifier (external referral id)"),
)
def map_referral(ctx: Context, rf1: hl7v2.Segment) -> str | None:
    """RF1 -> ServiceRequest (the referral): status 1, priority 2, type 3 -> category,
    original and external referral ids 6/11 -> identifier, reason 10 -> reasonCode."""
    if not ctx.patient:
        return None
    ctx.segment = rf1
    request: dict = {"resourceType": "ServiceRequest"}
    identifiers = [i for n in (6, 11) if (i := dt.ei(ctx.comps(rf1, n)))]
    if identifiers:
        request["identifier"] = identifiers
    request["status"] = REFERRAL_STATUS.get(ctx.value(rf1, 1).upper(), "unknown")
    request["intent"] = "order"
    priority = PRIORITY.get(ctx.value(rf1, 2).upper())
    if priority:
        request["priority"] = priority
    category = dt.cwe(ctx.comps(rf1, 3))
    if category:
        request["category"] = [category]
    request["subject"] = ref(ctx.patient)
    reasons = [r for r in (dt.cwe(f) for f in ctx.reps(rf1, 10)) if r]
    if reasons:
        request["reasonCode"] = reasons
    return ctx.add(request, identity=identifiers[0] if identifiers else None)


def _occurrence(ctx: Context, obr: hl7v2.Segment | None, tq1: hl7v2.Segment | None) -> str | None:
    """TQ1-7 (start), else OBR-27.4 (quantity/timing start)."""
    occurrence = None
    if tq1 is not None:
        occurrence = ctx.datetime(tq1, 7, "ServiceRequest.occurrenceDateTime")
    if occurrence is None and obr is not None:
        start = ctx.attempt(
            obr, 27, "ServiceRequest.occurrenceDateTime", lambda f: dt.parse_dtm(f.c(4))
        )
        occurrence = ctx.datetime_text(start) if start else None
    return occurrence


def _requester(ctx: Context, orc: hl7v2.Segment | None, obr: hl7v2.Segment | None) -> dict | None:
    requester = None
    if orc is not None:
        requester = actors.practitioner(ctx, ctx.comps(orc, 12))
    if requester is None and obr is not None:
        requester = actors.practitioner(ctx, ctx.comps(obr, 16))
    return requester


def _parent_order(
    ctx: Context, orc: hl7v2.Segment | None, obr: hl7v2.Segment | None, status: str, intent: str
) -> str | None:
    """ORC-8, else OBR-29 (parent order: placer id ^ filler id) -> the ServiceRequest this
    one is basedOn (IG: ORC-8 -> ServiceRequest.basedOn)."""
    parent = ctx.comps(orc, 8) if orc is not None else None
    if not parent and obr is not None:
        parent = ctx.comps(obr, 29)
    if not parent:
        return None
    identifiers = []
    for n, kind in ((1, "PLAC"), (2, "FILL")):
        value = parent.c(n)
        if value:
            identifiers.append({"type": dt.identifier_type(kind), "value": value})
    if not identifiers:
        return None
    request = {
        "resourceType": "ServiceRequest",
        "identifier": identifiers,
        "status": status,
        "intent": intent,
        "subject": ref(ctx.patient),
    }
    return ctx.add(request, identity=identifiers[0])


def _priority(ctx: Context, obr: hl7v2.Segment | None, tq1: hl7v2.Segment | None) -> str | None:
    code = ""
    if tq1 is not None:
        code = ctx.value(tq1, 9)
    if not code and obr is not None:
        code = ctx.value(obr, 27, 6) or ctx.value(obr, 5)
    return PRIORITY.get(code.upper()) if code else None
