"""RXA (+ RXR, ORC, OBX) -> Immunization."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors
from adapters.mapping.segments.report import order_identifiers

PERFORMER_FUNCTION = "http://terminology.hl7.org/CodeSystem/v2-0443"
MVX = "http://terminology.hl7.org/CodeSystem/MVX"
# OBX codes the IG maps onto the Immunization itself (the rest stay Observations)
ELIGIBILITY = "64994-7"
FUNDING_SOURCE = "30963-3"
VIS_TYPE = "69764-9"
VIS_VACCINE = "30956-7"
VIS_PUBLISHED = "29768-9"
VIS_PRESENTED = "29769-7"


@fields(
    "RXA",
    "Immunization",
    ("RXA-3", "Immunization.occurrence", "DTM -> occurrenceDateTime (else occurrenceString)"),
    ("RXA-5", "Immunization.vaccineCode", "CWE (CVX) -> CodeableConcept"),
    (
        "RXA-6",
        "Immunization.doseQuantity",
        "NM + RXA-7 units -> Quantity",
        "an amount other than 999",
    ),
    (
        "RXA-9",
        "Immunization.primarySource",
        "NIP001: 00 -> true, else false and the code -> reportOrigin",
    ),
    ("RXA-15", "Immunization.lotNumber", "text"),
    ("RXA-16", "Immunization.expirationDate", "DTM -> date", "a valid date"),
    ("RXA-17", "Immunization.manufacturer", "CWE (MVX) -> Reference with identifier/display"),
)
@fields(
    "RXR",
    "Immunization",
    ("RXR-1", "Immunization.route", "CWE (table 0162) -> CodeableConcept"),
    ("RXR-2", "Immunization.site", "CWE (table 0163) -> CodeableConcept"),
)
def map_immunization(
    ctx: Context,
    rxa: hl7v2.Segment,
    *,
    orc: hl7v2.Segment | None,
    rxr: hl7v2.Segment | None,
    observations: list[hl7v2.Segment],
) -> str | None:
    """RXA: administered 3 -> occurrenceDateTime, vaccine 5 -> vaccineCode, amount/units 6/7
    -> doseQuantity (999 = unknown), notes 9 (NIP001) -> primarySource / reportOrigin,
    provider 10 -> performer (AP), lot 15, expiry 16, manufacturer 17 (MVX), refusal 18 ->
    statusReason, completion 20 / action 21 -> status; RXR route 1 / site 2; ORC-2/3 ->
    identifier, ORC-12 -> performer (OP); OBX eligibility, funding and VIS -> the IG's
    programEligibility, fundingSource and education."""
    ctx.segment = rxa
    vaccine = dt.cwe(ctx.comps(rxa, 5), cs.coding_system("CVX"))
    if vaccine is None:
        ctx.issue(
            rxa,
            5,
            "",
            "Immunization.vaccineCode",
            "RXA-5 (administered code) is empty; this RXA is not converted",
            severity="error",
        )
        return None
    when = ctx.dtm(rxa, 3, "Immunization.occurrenceDateTime")
    imm: dict = {"resourceType": "Immunization"}
    placer, filler = order_identifiers(ctx, None, orc) if orc is not None else (None, None)
    identifiers = [i for i in (filler, placer) if i]
    if identifiers:
        imm["identifier"] = identifiers
    imm["status"] = _status(ctx, rxa)
    if imm["status"] == "not-done":
        reason = dt.cwe(ctx.comps(rxa, 18), cs.V2 + "0440")
        if reason:
            imm["statusReason"] = reason
    imm["vaccineCode"] = vaccine
    if not ctx.patient:
        return None
    imm["patient"] = ref(ctx.patient)
    if ctx.encounter:
        imm["encounter"] = ref(ctx.encounter)
    _occurrence(ctx, rxa, when, imm)
    _source(ctx, rxa, imm)
    _product(ctx, rxa, imm)
    if rxr is not None:
        ctx.segment = rxr
        _route_and_site(ctx, rxr, imm)
        ctx.segment = rxa
    amount = ctx.value(rxa, 6)
    if amount and amount != "999":
        number = ctx.attempt(
            rxa, 6, "Immunization.doseQuantity.value", lambda f: dt.decimal(f.c(1))
        )
        if number is not None:
            imm["doseQuantity"] = dt.quantity(number, ctx.comps(rxa, 7))
    performers = _performers(ctx, rxa, orc)
    if performers:
        imm["performer"] = performers
    _from_observations(ctx, imm, observations)
    identity = filler or placer
    key = None
    if identity is None:
        key = ctx.about("imm", ctx.value(rxa, 5), ctx.value(rxa, 3))
    return ctx.add(imm, identity=identity, key=key, global_key=key is not None)


def _occurrence(ctx: Context, rxa: hl7v2.Segment, when, imm: dict) -> None:
    if when:
        imm["occurrenceDateTime"] = ctx.datetime_text(when)
        return
    raw = ctx.value(rxa, 3)
    # occurrence[x] is required: keep the sender's text rather than drop the record
    imm["occurrenceString"] = raw or "unknown"
    if not raw:
        ctx.issue(
            rxa,
            3,
            "",
            "Immunization.occurrence[x]",
            "RXA-3 (date administered) is empty; occurrence is 'unknown'",
        )


def _source(ctx: Context, rxa: hl7v2.Segment, imm: dict) -> None:
    """RXA-9 (NIP001): 00 = administered here (primarySource), else where the record is from."""
    source = ctx.comps(rxa, 9)
    code = source.c(1)
    if code:
        imm["primarySource"] = code == "00"
        if code != "00":
            origin = dt.cwe(source, "urn:oid:2.16.840.1.114222.4.5.274")
            if origin:
                imm["reportOrigin"] = origin


def _product(ctx: Context, rxa: hl7v2.Segment, imm: dict) -> None:
    """RXA-17 manufacturer (MVX), RXA-15 lot number, RXA-16 expiration date."""
    manufacturer = ctx.comps(rxa, 17)
    if manufacturer.c(1) or manufacturer.c(2):
        reference: dict = {}
        if manufacturer.c(1):
            reference["identifier"] = {"system": MVX, "value": manufacturer.c(1)}
        if manufacturer.c(2):
            reference["display"] = manufacturer.c(2)
        imm["manufacturer"] = reference
    lot = ctx.value(rxa, 15)
    if lot:
        imm["lotNumber"] = lot
    expiry = ctx.date(rxa, 16, "Immunization.expirationDate")
    if expiry:
        imm["expirationDate"] = expiry


def _route_and_site(ctx: Context, rxr: hl7v2.Segment, imm: dict) -> None:
    site = dt.cwe(ctx.comps(rxr, 2), cs.V2 + "0163")
    if site:
        imm["site"] = site
    route = dt.cwe(ctx.comps(rxr, 1), cs.V2 + "0162")
    if route:
        imm["route"] = route


def _performers(ctx: Context, rxa: hl7v2.Segment, orc: hl7v2.Segment | None) -> list[dict]:
    """RXA-10 administering provider (AP), ORC-12 ordering provider (OP)."""
    performers = [
        {"function": _function("AP"), "actor": p} for p in actors.practitioners(ctx, rxa, 10)
    ]
    if orc is not None:
        performers += [
            {"function": _function("OP"), "actor": p} for p in actors.practitioners(ctx, orc, 12)
        ]
    return performers


def _function(code: str) -> dict:
    return {"coding": [{"system": PERFORMER_FUNCTION, "code": code}]}


def _status(ctx: Context, rxa: hl7v2.Segment) -> str:
    if ctx.value(rxa, 21).upper() == "D":
        return "entered-in-error"
    completion = ctx.value(rxa, 20).upper()
    if completion and completion not in cs.IMMUNIZATION_STATUS:
        ctx.issue(
            rxa,
            20,
            completion,
            "Immunization.status",
            "not a code of table 0322; completed",
            severity="information",
        )
    return cs.IMMUNIZATION_STATUS.get(completion, "completed")


def _from_observations(ctx: Context, imm: dict, observations: list[hl7v2.Segment]) -> None:
    education: dict[str, dict] = {}
    for obx in observations:
        code = ctx.value(obx, 3)
        value = dt.cwe(ctx.comps(obx, 5))
        group = ctx.value(obx, 4) or "1"
        if code == ELIGIBILITY and value:
            imm.setdefault("programEligibility", []).append(value)
        elif code == FUNDING_SOURCE and value:
            imm["fundingSource"] = value
        elif code in (VIS_TYPE, VIS_VACCINE) and value:
            text = value.get("text") or (value.get("coding") or [{}])[0].get("display") or ""
            if text:
                education.setdefault(group, {})["documentType"] = text
        elif code in (VIS_PUBLISHED, VIS_PRESENTED):
            parsed = ctx.dtm(obx, 5, "Immunization.education")
            if parsed:
                key = "publicationDate" if code == VIS_PUBLISHED else "presentationDate"
                education.setdefault(group, {})[key] = ctx.datetime_text(parsed)
    # FHIR's imm-1: an education entry needs its document type
    entries = [e for e in education.values() if "documentType" in e]
    if entries:
        imm["education"] = entries
