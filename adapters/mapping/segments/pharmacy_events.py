"""RXD -> MedicationDispense (RDS) and RXA -> MedicationAdministration (RAS): what the pharmacy
dispensed and what was given, each pointing at the order it carries out."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors

# RXA-20 completion status (table 0322) -> MedicationAdministration.status
ADMINISTRATION_STATUS = {"CP": "completed", "PA": "stopped", "RE": "not-done", "NA": "not-done"}


def _route(ctx: Context, rxr: hl7v2.Segment | None) -> dict:
    """RXR: route 1, site 2, method 4 (a Dosage's or a MedicationAdministration.dosage's)."""
    if rxr is None:
        return {}
    parts = {"route": dt.cwe(ctx.comps(rxr, 1)), "site": dt.cwe(ctx.comps(rxr, 2))}
    parts["method"] = dt.cwe(ctx.comps(rxr, 4))
    return {k: v for k, v in parts.items() if v}


@fields(
    "RXD",
    "MedicationDispense",
    (
        "RXD-2",
        "MedicationDispense.medication",
        "CWE -> medicationCodeableConcept (required: empty drops the RXD)",
    ),
    ("RXD-3", "MedicationDispense.whenHandedOver", "DTM -> dateTime", "a valid date"),
    ("RXD-4", "MedicationDispense.quantity", "NM + RXD-5 units -> Quantity", "a number"),
    ("RXD-7", "MedicationDispense.identifier", "EI (prescription number) -> Identifier"),
    ("RXD-9", "MedicationDispense.note", "CWE text -> note"),
    ("RXD-10", "MedicationDispense.performer.actor", "XCN -> Practitioner"),
    ("RXD-11", "MedicationDispense.substitution.wasSubstituted", "G or T -> true, else false"),
    (
        "RXD-18",
        "MedicationDispense.note",
        "lot number (with RXD-19 expiry) -> note text (R4 has no lot element)",
    ),
)
@fields(
    "RXR",
    "MedicationDispense",
    ("RXR-1", "MedicationDispense.dosageInstruction.route", "CWE", "after the RXD"),
    ("RXR-2", "MedicationDispense.dosageInstruction.site", "CWE", "after the RXD"),
    ("RXR-4", "MedicationDispense.dosageInstruction.method", "CWE", "after the RXD"),
)
def map_dispense(
    ctx: Context, rxd: hl7v2.Segment, rxr: hl7v2.Segment | None, request: str | None
) -> str | None:
    """RXD: give code 2 -> medication, dispensed 3 -> whenHandedOver, amount 4/5 ->
    quantity, form 6 (kept in the dosage text's place: R4 has none), prescription number 7 ->
    identifier, notes 9 -> note, dispensing provider 10 -> performer, substitution 11,
    lot/expiry 18/19 (no R4 element: kept in the note)."""
    ctx.segment = rxd
    drug = dt.cwe(ctx.comps(rxd, 2))
    if drug is None or not ctx.patient:
        ctx.issue(rxd, 2, "", "MedicationDispense.medication", "RXD-2 (give code) is empty")
        return None
    dispense: dict = {"resourceType": "MedicationDispense"}
    number = ctx.scoped(dt.ei(ctx.comps(rxd, 7)))
    if number:
        dispense["identifier"] = [number]
    dispense["status"] = "completed"
    dispense["medicationCodeableConcept"] = drug
    dispense["subject"] = ref(ctx.patient)
    if ctx.encounter:
        dispense["context"] = ref(ctx.encounter)
    provider = actors.practitioner(ctx, ctx.comps(rxd, 10))
    ctx.segment = rxd
    if provider:
        dispense["performer"] = [{"actor": provider}]
    if request:
        dispense["authorizingPrescription"] = [ref(request)]
    amount = ctx.attempt(rxd, 4, "MedicationDispense.quantity", lambda f: dt.decimal(f.c(1)))
    if amount is not None:
        dispense["quantity"] = dt.quantity(amount, ctx.comps(rxd, 5))
    handed = ctx.datetime(rxd, 3, "MedicationDispense.whenHandedOver")
    if handed:
        dispense["whenHandedOver"] = handed
    route = _route(ctx, rxr)
    if route:
        dispense["dosageInstruction"] = [route]
    substitution = ctx.value(rxd, 11).upper()
    if substitution:
        dispense["substitution"] = {"wasSubstituted": substitution in ("G", "T")}
    notes = [n for n in (f.c(2) or f.c(1) for f in ctx.reps(rxd, 9)) if n]
    lot, expiry = ctx.value(rxd, 18), ctx.value(rxd, 19)
    if lot:
        notes.append(f"lot {lot}" + (f", expires {expiry}" if expiry else ""))
    if notes:
        dispense["note"] = [{"text": n} for n in notes]
    return ctx.add(dispense, identity=number, key=None if number else f"{ctx.segment_key()}|rxd")


@fields(
    "RXA",
    "MedicationAdministration",
    (
        "RXA-3",
        "MedicationAdministration.effective",
        "DTM -> effectiveDateTime (effectivePeriod.start with RXA-4; required)",
    ),
    (
        "RXA-4",
        "MedicationAdministration.effective.end",
        "DTM -> effectivePeriod.end",
        "it differs from RXA-3",
    ),
    ("RXA-5", "MedicationAdministration.medication", "CWE -> medicationCodeableConcept"),
    (
        "RXA-6",
        "MedicationAdministration.dosage.dose",
        "NM + RXA-7 units -> Quantity",
        "a number other than 999 (unknown)",
    ),
    ("RXA-10", "MedicationAdministration.performer.actor", "XCN -> Practitioner"),
    (
        "RXA-18",
        "MedicationAdministration.statusReason",
        "CWE -> CodeableConcept",
        "RXA-20 RE or NA (not done)",
    ),
    ("RXA-19", "MedicationAdministration.reasonCode", "CWE -> CodeableConcept"),
    (
        "RXA-20",
        "MedicationAdministration.status",
        "table 0322: CP completed, PA stopped, RE/NA not-done",
    ),
    (
        "RXA-21",
        "MedicationAdministration.status",
        "action D -> entered-in-error",
        "D",
    ),
)
@fields(
    "RXR",
    "MedicationAdministration",
    ("RXR-1", "MedicationAdministration.dosage.route", "CWE", "after the RXA, with a dose"),
    ("RXR-2", "MedicationAdministration.dosage.site", "CWE", "after the RXA, with a dose"),
    ("RXR-4", "MedicationAdministration.dosage.method", "CWE", "after the RXA, with a dose"),
)
def map_administration(
    ctx: Context, rxa: hl7v2.Segment, rxr: hl7v2.Segment | None, request: str | None
) -> str | None:
    """RXA: start/end 3/4 -> effective, code 5 -> medication, amount 6/7 -> dosage.dose,
    administering provider 10 -> performer, refusal reason 18 -> statusReason, indication 19
    -> reasonCode, completion status 20 -> status (table 0322), action D 21 ->
    entered-in-error; RXR -> dosage route/site/method."""
    ctx.segment = rxa
    drug = dt.cwe(ctx.comps(rxa, 5))
    if drug is None or not ctx.patient:
        ctx.issue(rxa, 5, "", "MedicationAdministration.medication", "RXA-5 is empty")
        return None
    given: dict = {"resourceType": "MedicationAdministration"}
    status = ADMINISTRATION_STATUS.get(ctx.value(rxa, 20).upper(), "completed")
    if ctx.value(rxa, 21).upper() == "D":
        status = "entered-in-error"
    given["status"] = status
    reasons = [r for r in (dt.cwe(f) for f in ctx.reps(rxa, 18)) if r]
    if reasons and status == "not-done":
        given["statusReason"] = reasons
    given["medicationCodeableConcept"] = drug
    given["subject"] = ref(ctx.patient)
    if ctx.encounter:
        given["context"] = ref(ctx.encounter)
    start = ctx.datetime(rxa, 3, "MedicationAdministration.effectiveDateTime")
    end = ctx.datetime(rxa, 4, "MedicationAdministration.effectivePeriod.end")
    if start and end and end != start:
        given["effectivePeriod"] = {"start": start, "end": end}
    elif start:
        given["effectiveDateTime"] = start
    else:
        raise ctx.fail(rxa, 3, "", "MedicationAdministration.effective[x]", "RXA-3 is empty")
    performers = actors.practitioners(ctx, rxa, 10)
    ctx.segment = rxa
    if performers:
        given["performer"] = [{"actor": p} for p in performers]
    indications = [r for r in (dt.cwe(f) for f in ctx.reps(rxa, 19)) if r]
    if indications:
        given["reasonCode"] = indications
    if request:
        given["request"] = ref(request)
    amount = ctx.attempt(
        rxa, 6, "MedicationAdministration.dosage.dose", lambda f: dt.decimal(f.c(1))
    )
    if amount is not None and amount != 999:  # 999: amount unknown (RXA-6 convention)
        # a dosage needs a dose (mad-1): the route goes with it, not alone
        given["dosage"] = {**_route(ctx, rxr), "dose": dt.quantity(amount, ctx.comps(rxa, 7))}
    return ctx.add(given, key=f"{ctx.segment_key()}|rxa")
