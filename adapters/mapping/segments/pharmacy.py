"""RXE (+ ORC, RXO, RXR, TQ1, NTE) -> MedicationRequest; RXC components -> a Medication with
its ingredients."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors
from adapters.mapping.segments.report import order_identifiers

GTS = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"


def medication_status(ctx: Context, orc: hl7v2.Segment | None) -> str:
    if orc is None:
        return "active"
    return (
        cs.MEDICATION_ORDER_STATUS.get(ctx.value(orc, 5).upper())
        or cs.MEDICATION_ORDER_CONTROL.get(ctx.value(orc, 1).upper())
        or "active"
    )


@fields(
    "ORC",
    "MedicationRequest",
    ("ORC-1", "MedicationRequest.status", "order control -> status, when ORC-5 gives none"),
    ("ORC-2", "MedicationRequest.identifier", "EI -> Identifier, type PLAC"),
    ("ORC-3", "MedicationRequest.identifier", "EI -> Identifier, type FILL"),
    (
        "ORC-5",
        "MedicationRequest.status",
        "order status (table 0038) -> status",
        "a known code",
    ),
    ("ORC-9", "MedicationRequest.authoredOn", "DTM -> dateTime", "a valid date"),
    ("ORC-12", "MedicationRequest.requester", "XCN -> Practitioner"),
)
@fields(
    "RXE",
    "MedicationRequest",
    ("RXE-1.2", "MedicationRequest.dosageInstruction.timing.code", "TQ interval -> code", "no TQ1"),
    (
        "RXE-1.4",
        "MedicationRequest.dosageInstruction.timing.repeat.bounds.start",
        "TS -> boundsPeriod.start",
        "no TQ1, a valid date",
    ),
    (
        "RXE-1.5",
        "MedicationRequest.dosageInstruction.timing.repeat.bounds.end",
        "TS -> boundsPeriod.end",
        "no TQ1, a valid date",
    ),
    ("RXE-2", "MedicationRequest.medication", "CWE -> medicationCodeableConcept (else RXO-1)"),
    (
        "RXE-3",
        "MedicationRequest.dosageInstruction.doseAndRate.dose",
        "NM + RXE-5 units -> doseQuantity (doseRange with RXE-4)",
        "a number",
    ),
    ("RXE-7", "MedicationRequest.dosageInstruction.text", "CWE text -> text"),
    (
        "RXE-9",
        "MedicationRequest.substitution.allowed",
        "substitution status N -> allowedBoolean false, else true",
    ),
    (
        "RXE-10",
        "MedicationRequest.dispenseRequest.quantity",
        "NM + RXE-11 units -> Quantity",
        "a number",
    ),
    (
        "RXE-12",
        "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
        "NM -> unsignedInt",
        "a whole number",
    ),
    ("RXE-13", "MedicationRequest.requester", "XCN -> Practitioner", "ORC-12 gives none"),
    (
        "RXE-23",
        "MedicationRequest.dosageInstruction.doseAndRate.rate",
        "NM + RXE-24 units -> rateQuantity",
        "a number",
    ),
    ("RXE-27", "MedicationRequest.reasonCode", "CWE (give indication) -> CodeableConcept"),
)
@fields(
    "RXR",
    "MedicationRequest",
    ("RXR-1", "MedicationRequest.dosageInstruction.route", "CWE (table 0162)", "after the RXE"),
    ("RXR-2", "MedicationRequest.dosageInstruction.site", "CWE (table 0550)", "after the RXE"),
    ("RXR-4", "MedicationRequest.dosageInstruction.method", "CWE (table 0165)", "after the RXE"),
)
@fields(
    "NTE",
    "MedicationRequest",
    ("NTE-3", "MedicationRequest.note.text", "FT -> Annotation text, one per NTE of the order"),
)
@fields(
    "TQ1",
    "MedicationRequest",
    ("TQ1-3", "MedicationRequest.dosageInstruction.timing.code", "RPT -> CodeableConcept"),
    (
        "TQ1-7",
        "MedicationRequest.dosageInstruction.timing.repeat.bounds.start",
        "DTM -> boundsPeriod.start",
        "a valid date",
    ),
    (
        "TQ1-8",
        "MedicationRequest.dosageInstruction.timing.repeat.bounds.end",
        "DTM -> boundsPeriod.end",
        "a valid date",
    ),
)
def map_medication_request(
    ctx: Context,
    rxe: hl7v2.Segment,
    *,
    orc: hl7v2.Segment | None,
    rxo: hl7v2.Segment | None = None,
    rxr: hl7v2.Segment | None = None,
    tq1: hl7v2.Segment | None = None,
    notes: list[str] | None = None,
    components: list[hl7v2.Segment] | None = None,
    order_components: list[hl7v2.Segment] | None = None,
) -> str | None:
    """RXE: give code 2 (else RXO-1) -> medicationCodeableConcept (a Medication with RXE-6 form
    and the RXC ingredients when the drug is a compound), amount 3/4 + units 5 ->
    dose, instructions 7 -> dosage text, substitution 9, dispense amount/units 10/11 ->
    dispenseRequest.quantity, refills 12, ordering DEA 13 -> requester (after ORC-12),
    indication 27 -> reasonCode, rate 23/24 -> rateQuantity; RXR route/site/method; TQ1
    repeat pattern 3 and start/end 7/8 -> timing; ORC ids, status, ORC-9 -> authoredOn."""
    ctx.segment = rxe
    medication = dt.cwe(ctx.comps(rxe, 2))
    if medication is None and rxo is not None:
        medication = dt.cwe(ctx.comps(rxo, 1))
    if medication is None:
        ctx.issue(
            rxe,
            2,
            "",
            "MedicationRequest.medicationCodeableConcept",
            "RXE-2 (give code) is empty; this RXE is not converted",
            severity="error",
        )
        return None
    if not ctx.patient:
        return None
    request: dict = {"resourceType": "MedicationRequest"}
    placer, filler = order_identifiers(ctx, None, orc) if orc is not None else (None, None)
    identifiers = [i for i in (placer, filler) if i]
    if identifiers:
        request["identifier"] = identifiers
    request["status"] = medication_status(ctx, orc)
    request["intent"] = "order"
    _medication(ctx, request, rxe, medication, ctx.comps(rxe, 6), components)
    request["subject"] = ref(ctx.patient)
    if ctx.encounter:
        request["encounter"] = ref(ctx.encounter)
    _ordered(ctx, request, orc)
    if "requester" not in request:
        requester = actors.practitioner(ctx, ctx.comps(rxe, 13))
        if requester:
            request["requester"] = requester
    ctx.segment = rxe
    reasons = [r for r in (dt.cwe(f) for f in ctx.reps(rxe, 27)) if r]
    if reasons:
        request["reasonCode"] = reasons
    if notes:
        request["note"] = [{"text": n} for n in notes]
    dosage = _dosage(ctx, rxe, rxr, tq1)
    if dosage:
        request["dosageInstruction"] = [dosage]
    dispense = _dispense(ctx, rxe)
    if dispense:
        request["dispenseRequest"] = dispense
    substitution = ctx.value(rxe, 9).upper()
    if substitution:
        request["substitution"] = {"allowedBoolean": substitution != "N"}
    original = map_original_order(ctx, rxo, orc, order_components) if rxo is not None else None
    if original:
        request["basedOn"] = [ref(original)]
    identity = placer or filler
    key = None if identity else ctx.about("rx", ctx.value(rxe, 2), str(ctx.occurrence(rxe)))
    return ctx.add(request, identity=identity, key=key, global_key=key is not None)


def map_order_carried_out(
    ctx: Context, orc: hl7v2.Segment, medication: dict, notes: list[str]
) -> str | None:
    """An ORC with neither RXE nor RXO (a RAS or RDS that only names the order it carries out)
    -> that MedicationRequest, for the drug given. Sent as a conditional create: the
    pharmacy's own, richer record of the order is never overwritten."""
    placer, filler = order_identifiers(ctx, None, orc)
    identity = placer or filler
    if identity is None or not ctx.patient:
        return None
    request: dict = {"resourceType": "MedicationRequest"}
    request["identifier"] = [i for i in (placer, filler) if i]
    request["status"] = medication_status(ctx, orc)
    request["intent"] = "order"
    request["medicationCodeableConcept"] = medication
    request["subject"] = ref(ctx.patient)
    if ctx.encounter:
        request["encounter"] = ref(ctx.encounter)
    _ordered(ctx, request, orc)
    if notes:
        request["note"] = [{"text": n} for n in notes]
    ctx.segment = orc
    return ctx.add(request, identity=identity, update=False)


def _ordered(ctx: Context, request: dict, orc: hl7v2.Segment | None) -> None:
    """When and by whom the order was written: ORC-9 -> authoredOn, ORC-12 -> requester."""
    if orc is None:
        return
    authored = ctx.datetime(orc, 9, "MedicationRequest.authoredOn")
    if authored:
        request["authoredOn"] = authored
    requester = actors.practitioner(ctx, ctx.comps(orc, 12))
    if requester:
        request["requester"] = requester


@fields(
    "RXO",
    "MedicationRequest",
    ("RXO-1", "MedicationRequest.medication", "CWE -> medicationCodeableConcept"),
    (
        "RXO-2",
        "MedicationRequest.dosageInstruction.doseAndRate.dose",
        "NM + RXO-4 units -> doseQuantity",
        "a number",
    ),
    (
        "RXO-11",
        "MedicationRequest.dispenseRequest.quantity",
        "NM + RXO-12 units -> Quantity",
        "a number",
    ),
    (
        "RXO-13",
        "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
        "NM -> unsignedInt",
        "a whole number",
    ),
)
def map_original_order(
    ctx: Context,
    rxo: hl7v2.Segment,
    orc: hl7v2.Segment | None,
    components: list[hl7v2.Segment] | None = None,
    *,
    intent: str = "original-order",
    notes: list[str] | None = None,
) -> str | None:
    """RXO (the order as the prescriber wrote it) -> MedicationRequest, intent original-order,
    that the pharmacy's encoded order (RXE) is basedOn: requested give code 1 -> medication,
    amount 2/3 + units 4 -> dose, dispense amount/units 11/12 -> dispenseRequest.quantity,
    refills 13, substitution 9 (IG: RXO -> MedicationRequest). As the order itself (OMP), it
    also takes ORC-9/ORC-12 and the order's notes, as an RXE's request does."""
    ctx.segment = rxo
    medication = dt.cwe(ctx.comps(rxo, 1))
    if medication is None:
        return None
    request: dict = {"resourceType": "MedicationRequest"}
    # the order itself (OMP) carries the order numbers; an RXE's original order shares them
    placer, filler = order_identifiers(ctx, None, orc) if orc is not None else (None, None)
    identity = (placer or filler) if intent == "order" else None
    if identity:
        request["identifier"] = [i for i in (placer, filler) if i]
    request["status"] = medication_status(ctx, orc)
    request["intent"] = intent
    _medication(ctx, request, rxo, medication, ctx.comps(rxo, 5), components)
    request["subject"] = ref(ctx.patient)
    if ctx.encounter:
        request["encounter"] = ref(ctx.encounter)
    dose = ctx.attempt(rxo, 2, "MedicationRequest.dosageInstruction", lambda f: dt.decimal(f.c(1)))
    if dose is not None:
        quantity = dt.quantity(dose, ctx.comps(rxo, 4))
        request["dosageInstruction"] = [{"doseAndRate": [{"doseQuantity": quantity}]}]
    amount = ctx.attempt(
        rxo, 11, "MedicationRequest.dispenseRequest.quantity", lambda f: dt.decimal(f.c(1))
    )
    if amount is not None:
        quantity = dt.quantity(amount, ctx.comps(rxo, 12))
        request["dispenseRequest"] = {"quantity": quantity}
    refills = ctx.value(rxo, 13)
    if refills.isdigit():
        request.setdefault("dispenseRequest", {})["numberOfRepeatsAllowed"] = int(refills)
    if intent == "order":  # the order itself (OMP): who wrote it, when, and its notes
        _ordered(ctx, request, orc)
        ctx.segment = rxo
        if notes:
            request["note"] = [{"text": n} for n in notes]
    if identity:
        return ctx.add(request, identity=identity)
    key = ctx.about("rx-original", ctx.value(rxo, 1), str(ctx.occurrence(rxo)))
    return ctx.add(request, key=key)


@fields(
    "RXE",
    "Medication",
    ("RXE-6", "Medication.form", "CWE (give dosage form) -> CodeableConcept", "RXC components"),
)
@fields(
    "RXO",
    "Medication",
    ("RXO-5", "Medication.form", "CWE (dosage form) -> CodeableConcept", "RXC components"),
)
def _medication(
    ctx: Context,
    request: dict,
    drug: hl7v2.Segment,
    code: dict,
    form: dt.Comps,
    components: list[hl7v2.Segment] | None,
) -> None:
    """The drug inline, or, for a compound (RXC), a Medication that lists its ingredients."""
    if not components:
        request["medicationCodeableConcept"] = code
        return
    medication: dict = {"resourceType": "Medication", "code": code}
    form_concept = dt.cwe(form)
    if form_concept:
        medication["form"] = form_concept
    ingredients = [i for i in (_ingredient(ctx, rxc) for rxc in components) if i]
    if ingredients:
        medication["ingredient"] = ingredients
    ctx.segment = drug
    request["medicationReference"] = ref(ctx.add(medication, key=f"{ctx.segment_key()}|drug"))


@fields(
    "RXC",
    "Medication",
    ("RXC-1", "Medication.ingredient.isActive", "B (base) -> false, else true"),
    ("RXC-2", "Medication.code", "CWE -> the component's own Medication"),
    ("RXC-3", "Medication.amount", "NM + RXC-4 units -> amount.numerator", "a number"),
    (
        "RXC-5",
        "Medication.ingredient.strength",
        "NM + RXC-6 units per RXC-8/9 volume -> Ratio",
        "a number",
    ),
)
def _ingredient(ctx: Context, rxc: hl7v2.Segment) -> dict | None:
    """RXC: component type 1 (B = base, not active), code 2, amount 3/4 -> a Medication of its
    own; strength 5/6 per volume 8/9 -> ingredient.strength (IG: RXC -> Medication)."""
    ctx.segment = rxc
    code = dt.cwe(ctx.comps(rxc, 2))
    if code is None:
        ctx.issue(rxc, 2, "", "Medication.ingredient", "RXC-2 (component code) is empty")
        return None
    component: dict = {"resourceType": "Medication", "code": code}
    amount = ctx.attempt(rxc, 3, "Medication.amount", lambda f: dt.decimal(f.c(1)))
    if amount is not None:
        numerator = dt.quantity(amount, ctx.comps(rxc, 4))
        component["amount"] = {"numerator": numerator, "denominator": {"value": 1}}
    ingredient: dict = {"itemReference": ref(ctx.add(component))}
    ingredient["isActive"] = ctx.value(rxc, 1).upper() != "B"
    strength = ctx.attempt(rxc, 5, "Medication.ingredient.strength", lambda f: dt.decimal(f.c(1)))
    if strength is not None:
        volume = ctx.attempt(rxc, 8, "Medication.ingredient.strength", lambda f: dt.decimal(f.c(1)))
        per = dt.quantity(volume, ctx.comps(rxc, 9)) if volume is not None else {"value": 1}
        ingredient["strength"] = {
            "numerator": dt.quantity(strength, ctx.comps(rxc, 6)),
            "denominator": per,
        }
    return ingredient


def _dosage(ctx, rxe, rxr, tq1) -> dict:
    dosage: dict = {}
    texts = []
    for f in ctx.reps(rxe, 7):
        text = f.c(2) or f.c(9) or f.c(1)
        if text:
            texts.append(text)
    if texts:
        dosage["text"] = " ".join(texts)
    timing = _tq1_timing(ctx, tq1) if tq1 is not None else _tq_timing(ctx, rxe)
    if timing:
        dosage["timing"] = timing
    if rxr is not None:
        route = dt.cwe(ctx.comps(rxr, 1), cs.V2 + "0162")
        if route:
            dosage["route"] = route
        site = dt.cwe(ctx.comps(rxr, 2), cs.V2 + "0550")
        if site:
            dosage["site"] = site
        method = dt.cwe(ctx.comps(rxr, 4), cs.V2 + "0165")
        if method:
            dosage["method"] = method
    dose_rate: dict = {}
    units = ctx.comps(rxe, 5)
    low = ctx.attempt(
        rxe, 3, "MedicationRequest.dosageInstruction.doseAndRate.dose", lambda f: dt.decimal(f.c(1))
    )
    high = ctx.attempt(
        rxe, 4, "MedicationRequest.dosageInstruction.doseAndRate.dose", lambda f: dt.decimal(f.c(1))
    )
    if low is not None and high is not None and high != low:
        dose_rate["doseRange"] = {"low": dt.quantity(low, units), "high": dt.quantity(high, units)}
    elif low is not None:
        dose_rate["doseQuantity"] = dt.quantity(low, units)
    rate = ctx.attempt(
        rxe,
        23,
        "MedicationRequest.dosageInstruction.doseAndRate.rate",
        lambda f: dt.decimal(f.c(1)),
    )
    if rate is not None:
        dose_rate["rateQuantity"] = dt.quantity(rate, ctx.comps(rxe, 24))
    if dose_rate:
        dosage["doseAndRate"] = [dose_rate]
    return dosage


def _tq1_timing(ctx, tq1) -> dict:
    return _timing(ctx, ctx.comps(tq1, 3), tq1, (7, 1), (8, 1))


def _tq_timing(ctx, rxe) -> dict:
    """Before v2.5 (no TQ1) the timing is RXE-1 (TQ): interval 2 (its repeat pattern), start 4,
    end 5; without it a v2.3 order's "BID" would be lost."""
    pattern = dt.Comps(ctx.comps(rxe, 1).c(2), ctx.enc)
    return _timing(ctx, pattern, rxe, (1, 4), (1, 5))


def _timing(ctx, pattern, seg, start_at, end_at) -> dict:
    timing: dict = {}
    if pattern.c(1):
        timing["code"] = dt.cwe(pattern, GTS)
    target = "MedicationRequest.dosageInstruction.timing.repeat"
    bounds = {}
    for name, (n, comp) in (("start", start_at), ("end", end_at)):
        parsed = ctx.dtm(seg, n, target, comp)
        if parsed:
            bounds[name] = ctx.datetime_text(parsed)
    if bounds:
        timing["repeat"] = {"boundsPeriod": bounds}
    return timing


def _dispense(ctx, rxe) -> dict:
    dispense: dict = {}
    amount = ctx.attempt(
        rxe, 10, "MedicationRequest.dispenseRequest.quantity", lambda f: dt.decimal(f.c(1))
    )
    if amount is not None:
        dispense["quantity"] = dt.quantity(amount, ctx.comps(rxe, 11))
    refills = ctx.value(rxe, 12)
    if refills.isdigit():
        dispense["numberOfRepeatsAllowed"] = int(refills)
    elif refills:
        ctx.issue(
            rxe,
            12,
            refills,
            "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
            "not a whole number; left out",
        )
    return dispense
