"""IN1 (+ IN2) -> Coverage with its payor Organization; GT1 -> Account with its guarantor;
FT1 -> ChargeItem."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors
from adapters.mapping.segments.patient import add_patient_details
from adapters.mapping.segments.related import person_key, related_person, relationship

COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
GUARANTOR = "GT1-3 names a guarantor other than the patient"


@fields(
    "IN1",
    "Coverage",
    (
        "IN1-1",
        "Coverage.identifier",
        "set ID, with IN1-2/3/36 -> the derived urn:uuid identifier",
        "no policy number or insured's id with a system",
    ),
    ("IN1-2", "Coverage.class.value", "CWE (plan id) -> class plan, CWE-2 its name"),
    ("IN1-3", "Coverage.payor", "CX -> the payor Organization's identifier"),
    ("IN1-4", "Coverage.payor.display", "XON (company name) -> display"),
    ("IN1-8", "Coverage.class.value", "group number -> class group"),
    ("IN1-9", "Coverage.class.name", "group name -> class group name", "IN1-8 is valued"),
    ("IN1-12", "Coverage.period.start", "DT -> date", "a valid date"),
    ("IN1-13", "Coverage.period.end", "DT -> date", "a valid date"),
    ("IN1-15", "Coverage.type", "CWE (table 0086) -> CodeableConcept"),
    ("IN1-17", "Coverage.relationship", "CWE (table 0063) -> subscriber relationship"),
    ("IN1-22", "Coverage.order", "coordination of benefits priority -> positiveInt", "above 0"),
    ("IN1-36", "Coverage.identifier", "policy number -> Identifier"),
    ("IN1-49", "Coverage.subscriberId", "CX (insured's id) -> subscriberId, Identifier type SN"),
)
@fields(
    "IN1",
    "RelatedPerson",
    (
        "IN1-16",
        "RelatedPerson.name",
        "XPN (insured) -> the subscriber's HumanName",
        "IN1-17 names another person",
    ),
    (
        "IN1-18",
        "RelatedPerson.birthDate",
        "DT -> date",
        "IN1-17 names another person, a valid date",
    ),
    ("IN1-19", "RelatedPerson.address", "XAD -> Address", "IN1-17 names another person"),
)
def map_coverage(ctx: Context, in1: hl7v2.Segment, in2: hl7v2.Segment | None = None) -> str | None:
    """IN1: plan 2 -> class plan, company id/name/address/phone 3/4/5/7 -> payor Organization,
    group 8/9 -> class group, dates 12/13 -> period, plan type 15 -> type, insured 16-19 and
    relationship 17 -> subscriber/relationship, priority 22 -> order, policy number 36 and
    insured's id 49 -> identifier / subscriberId. IN2-6/IN2-8 (Medicare/Medicaid) ->
    identifier."""
    ctx.segment = in1
    if not ctx.patient:
        return None
    coverage: dict = {"resourceType": "Coverage"}
    identifiers = []
    policy = ctx.value(in1, 36)
    if policy:
        identifiers.append({"type": dt.identifier_type("MB"), "value": policy})
    insured_id = dt.cx(ctx.comps(in1, 49))
    if insured_id:
        insured_id.setdefault("type", dt.identifier_type("SN"))
        identifiers.append(insured_id)
    if in2 is not None:
        insured_patient_details(ctx, in2)
        ctx.segment = in1
        for n, kind in ((6, "MC"), (8, "MA")):
            value = ctx.value(in2, n)
            if value:
                identifiers.append({"type": dt.identifier_type(kind), "value": value})
    if identifiers:
        coverage["identifier"] = identifiers
    coverage["status"] = "active"
    plan_type = dt.cwe(ctx.comps(in1, 15), cs.V2 + "0086")
    if plan_type:
        coverage["type"] = plan_type
    relation_field = ctx.comps(in1, 17)
    relation = relation_field.c(1).upper()
    if relation == "SEL" or not relation:
        subscriber = ctx.patient if relation == "SEL" else None
    else:
        names = [n for n in (dt.xpn(f) for f in ctx.reps(in1, 16)) if n]
        birth_date = ctx.date(in1, 18, "RelatedPerson.birthDate")
        subscriber = related_person(
            ctx,
            names=names,
            relationships=[r for r in (relationship(relation_field),) if r],
            addresses=[a for a in (dt.xad(f) for f in ctx.reps(in1, 19)) if a],
            birth_date=birth_date,
            key=person_key(names, relation, birth_date),
        )
    ctx.segment = in1
    if subscriber:
        coverage["subscriber"] = ref(subscriber)
    subscriber_id = (insured_id or {}).get("value") or policy
    if subscriber_id:
        coverage["subscriberId"] = subscriber_id
    coverage["beneficiary"] = ref(ctx.patient)
    if relation:
        concept = {"coding": []}
        mapped = cs.SUBSCRIBER_RELATIONSHIP.get(relation)
        if mapped:
            concept["coding"].append({"system": cs.SUBSCRIBER_RELATIONSHIP_SYSTEM, "code": mapped})
        concept["coding"].append(cs.v2_coding("0063", relation))
        coverage["relationship"] = concept
    start = ctx.date(in1, 12, "Coverage.period.start")
    end = ctx.date(in1, 13, "Coverage.period.end")
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        coverage["period"] = period
    coverage["payor"] = [_payor(ctx, in1)]
    classes = []
    plan = ctx.comps(in1, 2)
    if plan.c(1):
        classes.append(_class("plan", plan.c(1), plan.c(2)))
    group, group_name = ctx.value(in1, 8), ctx.value(in1, 9)
    if group:
        classes.append(_class("group", group, group_name))
    if classes:
        coverage["class"] = classes
    order = ctx.value(in1, 22)
    if order.isdigit() and int(order) > 0:
        coverage["order"] = int(order)
    identity = next((i for i in identifiers if i.get("value")), None)
    key = None
    if identity is None or "system" not in identity:
        identity = None
        key = ctx.about("coverage", plan.c(1), ctx.value(in1, 3), policy, ctx.value(in1, 1))
    return ctx.add(coverage, identity=identity, key=key, global_key=key is not None)


def _class(kind: str, value: str, name: str) -> dict:
    out: dict = {"type": {"coding": [{"system": COVERAGE_CLASS, "code": kind}]}, "value": value}
    if name:
        out["name"] = name
    return out


@fields(
    "IN1",
    "Organization",
    ("IN1-4", "Organization.name", "XON (company name) -> name"),
    ("IN1-5", "Organization.address", "XAD -> Address, each repetition"),
    ("IN1-7", "Organization.telecom", "XTN -> ContactPoint (work), each repetition"),
)
def _payor(ctx: Context, in1: hl7v2.Segment) -> dict:
    """IN1-3 (company id, CX) and IN1-4 (company name, XON) -> Organization; with neither, a
    reference that says the payor is unknown (Coverage.payor is required, and the plan in
    IN1-2 is not the company that pays)."""
    company_id = dt.cx(ctx.comps(in1, 3))
    name = ctx.value(in1, 4)
    if not company_id and not name:
        ctx.issue(
            in1,
            3,
            "",
            "Coverage.payor",
            "no insurance company (IN1-3/IN1-4); payor marked unknown",
            severity="information",
        )
        return {"extension": [{"url": cs.DATA_ABSENT_REASON, "valueCode": "unknown"}]}
    org: dict = {"resourceType": "Organization"}
    if company_id:
        org["identifier"] = [company_id]
    if name:
        org["name"] = name
    addresses = [a for a in (dt.xad(f) for f in ctx.reps(in1, 5)) if a]
    if addresses:
        org["address"] = addresses
    telecom = [t for t in (dt.xtn(f, "work") for f in ctx.reps(in1, 7)) if t]
    if telecom:
        org["telecom"] = telecom
    url = ctx.add(
        org,
        identity=company_id,
        key=None if company_id else f"payor:{name}",
        global_key=company_id is None,
        update=False,
    )
    return ref(url, name or None)


@fields(
    "GT1",
    "Account",
    (
        "GT1-3",
        "Account.guarantor.party",
        "XPN -> RelatedPerson (relationship from GT1-11)",
    ),
    (
        "GT1-11",
        "Account.guarantor.party",
        "SEL -> the Patient itself (GT1 ids, name, address, phones added to it)",
        "the code is SEL",
    ),
    ("GT1-13", "Account.guarantor.period.start", "DT -> date", "a valid date"),
    ("GT1-14", "Account.guarantor.period.end", "DT -> date", "a valid date"),
    ("GT1-21", "Account.guarantor.party", "XON -> Organization", "GT1-3 is empty"),
)
def map_account(
    ctx: Context, gt1_segments: list[hl7v2.Segment], pid: hl7v2.Segment | None = None
) -> str | None:
    """PID-18 (patient account number) and GT1 -> Account: status active, subject the patient,
    one guarantor per GT1 (the patient itself when GT1-11 is SEL, else a RelatedPerson or, for
    GT1-21, an Organization)."""
    if not ctx.patient:
        return None
    pid = pid if pid is not None else ctx.message.first("PID")
    account_number = dt.cx(ctx.comps(pid, 18)) if pid is not None else None
    if account_number is None and not gt1_segments:
        return None
    account: dict = {"resourceType": "Account"}
    if account_number:
        account_number.setdefault("type", dt.identifier_type("AN"))
        account_number = ctx.scoped(account_number)  # assigned by the sending facility
        account["identifier"] = [account_number]
    account["status"] = "active"
    account["subject"] = [ref(ctx.patient)]
    guarantors = []
    for gt1 in gt1_segments:
        ctx.segment = gt1
        party = _guarantor(ctx, gt1)
        if party:
            guarantor: dict = {"party": party}
            start = ctx.date(gt1, 13, "Account.guarantor.period.start")
            end = ctx.date(gt1, 14, "Account.guarantor.period.end")
            period = {k: v for k, v in (("start", start), ("end", end)) if v}
            if period:
                guarantor["period"] = period
            guarantors.append(guarantor)
    if guarantors:
        account["guarantor"] = guarantors
    identity = account_number if account_number and account_number.get("system") else None
    key = None if identity else ctx.about("account", (account_number or {}).get("value", ""))
    return ctx.add(account, identity=identity, key=key, global_key=key is not None)


@fields(
    "GT1",
    "RelatedPerson",
    ("GT1-2", "RelatedPerson.identifier", "CX -> Identifier, those with a system", GUARANTOR),
    ("GT1-5", "RelatedPerson.address", "XAD -> Address, each repetition", GUARANTOR),
    ("GT1-6", "RelatedPerson.telecom", "XTN -> ContactPoint (home)", GUARANTOR),
    ("GT1-7", "RelatedPerson.telecom", "XTN -> ContactPoint (work)", GUARANTOR),
    ("GT1-8", "RelatedPerson.birthDate", "DTM -> date", GUARANTOR + ", a valid date"),
    ("GT1-9", "RelatedPerson.gender", "administrative sex (table 0001) -> gender", GUARANTOR),
)
def _guarantor(ctx: Context, gt1: hl7v2.Segment) -> dict | None:
    relation_field = ctx.comps(gt1, 11)
    if relation_field.c(1).upper() == "SEL":
        _guarantor_is_patient(ctx, gt1)
        return ref(ctx.patient)
    names = [n for n in (dt.xpn(f) for f in ctx.reps(gt1, 3)) if n]
    if not names:
        org = actors.organization(ctx, ctx.comps(gt1, 21))
        if org:
            return org
        ctx.issue(
            gt1,
            3,
            "",
            "Account.guarantor.party",
            "GT1 names no guarantor (GT1-3, GT1-21); left out",
        )
        return None
    telecom = [t for t in (dt.xtn(f, "home") for f in ctx.reps(gt1, 6)) if t]
    telecom += [t for t in (dt.xtn(f, "work") for f in ctx.reps(gt1, 7)) if t]
    identifiers = [i for i in (dt.cx(f) for f in ctx.reps(gt1, 2)) if i and "system" in i]
    birth_date = ctx.date(gt1, 8, "RelatedPerson.birthDate")
    url = related_person(
        ctx,
        names=names,
        relationships=[r for r in (relationship(relation_field),) if r],
        addresses=[a for a in (dt.xad(f) for f in ctx.reps(gt1, 5)) if a],
        telecom=telecom,
        birth_date=birth_date,
        gender=cs.ADMINISTRATIVE_SEX.get(ctx.value(gt1, 9).upper()),
        identifiers=identifiers,
        key=person_key(names, relation_field.c(1), birth_date),
    )
    return ref(url) if url else None


@fields(
    "GT1",
    "Patient",
    ("GT1-2", "Patient.identifier", "CX (guarantor number) -> Identifier", "GT1-11 is SEL"),
    ("GT1-3", "Patient.name", "XPN -> HumanName", "GT1-11 is SEL"),
    ("GT1-5", "Patient.address", "XAD -> Address", "GT1-11 is SEL"),
    ("GT1-6", "Patient.telecom", "XTN -> ContactPoint (home)", "GT1-11 is SEL"),
    ("GT1-7", "Patient.telecom", "XTN -> ContactPoint (work)", "GT1-11 is SEL"),
    ("GT1-12", "Patient.identifier", "SSN -> Identifier (type SS)", "GT1-11 is SEL"),
    ("GT1-19", "Patient.identifier", "CX (employee id) -> Identifier", "GT1-11 is SEL"),
)
def _guarantor_is_patient(ctx: Context, gt1: hl7v2.Segment) -> None:
    """GT1 of the patient (GT1-11 SEL) -> Patient: number 2, name 3, address 5, phones 6/7,
    SSN 12, employee id 19 (IG: GT1 -> Patient when the guarantor is the patient)."""
    identifiers = [i for n in (2, 19) for i in (dt.cx(f) for f in ctx.reps(gt1, n)) if i]
    ssn = ctx.value(gt1, 12)
    if ssn:
        identifiers.append({"type": dt.identifier_type("SS"), "system": cs.US_SSN, "value": ssn})
    telecom = [t for t in (dt.xtn(f, "home") for f in ctx.reps(gt1, 6)) if t]
    telecom += [t for t in (dt.xtn(f, "work") for f in ctx.reps(gt1, 7)) if t]
    add_patient_details(
        ctx,
        identifier=identifiers,
        name=[n for n in (dt.xpn(f) for f in ctx.reps(gt1, 3)) if n],
        address=[a for a in (dt.xad(f) for f in ctx.reps(gt1, 5)) if a],
        telecom=telecom,
    )


@fields(
    "IN2",
    "Patient",
    ("IN2-6", "Patient.identifier", "Medicare number -> Identifier (type MC)"),
    ("IN2-7", "Patient.name", "XPN -> HumanName (Medicaid case name)"),
    ("IN2-8", "Patient.identifier", "Medicaid number -> Identifier (type MA)"),
    ("IN2-10", "Patient.identifier", "military id -> Identifier (type MI)"),
    ("IN2-61", "Patient.identifier", "CX -> Identifier (type MB)"),
)
def insured_patient_details(ctx: Context, in2: hl7v2.Segment) -> None:
    """IN2 -> Patient: Medicare number 6 (MC), Medicaid case name 7 and number 8 (MA),
    military id 10, patient member number 61 (MB) (IG: IN2 -> Patient)."""
    identifiers = []
    for n, kind in ((6, "MC"), (8, "MA"), (10, "MI")):
        value = ctx.value(in2, n)
        if value:
            identifiers.append({"type": dt.identifier_type(kind), "value": value})
    member = dt.cx(ctx.comps(in2, 61))
    if member:
        member.setdefault("type", dt.identifier_type("MB"))
        identifiers.append(member)
    names = [n for n in (dt.xpn(f) for f in ctx.reps(in2, 7)) if n]
    add_patient_details(ctx, identifier=identifiers, name=names)


@fields(
    "FT1",
    "ChargeItem",
    (
        "FT1-1",
        "ChargeItem.identifier",
        "set ID, with FT1-4/7 -> the derived urn:uuid identifier",
        "no FT1-2",
    ),
    ("FT1-2", "ChargeItem.identifier", "transaction id -> Identifier (sender's system)"),
    ("FT1-4", "ChargeItem.occurrence", "DR -> occurrenceDateTime / Period", "a valid date"),
    ("FT1-5", "ChargeItem.enteredDate", "DTM -> dateTime", "a valid date"),
    ("FT1-6", "ChargeItem.status", "CG/CD -> billable, else unknown"),
    ("FT1-7", "ChargeItem.code", "CWE -> CodeableConcept (required: empty drops the FT1)"),
    ("FT1-10", "ChargeItem.quantity", "NM -> Quantity", "a number"),
    ("FT1-11", "ChargeItem.priceOverride", "CP -> Money", "a number"),
    ("FT1-19", "ChargeItem.reason", "CWE -> CodeableConcept, each repetition"),
    ("FT1-20", "ChargeItem.performer.actor", "XCN -> Practitioner", "an id or a name"),
    (
        "FT1-21",
        "ChargeItem.enterer",
        "XCN (ordered by) -> Practitioner, the first",
        "an id or a name",
    ),
    ("FT1-29", "ChargeItem.product", "CWE (NDC) -> productCodeableConcept"),
)
@fields(
    "FT1",
    "MedicationDispense",
    ("FT1-29", "MedicationDispense.medication", "CWE (NDC) -> the dispensed drug"),
    ("FT1-42", "MedicationDispense.authorizingPrescription", "-> Identifier (type PRN)", "FT1-29"),
    ("FT1-43", "MedicationDispense.quantity", "CQ -> SimpleQuantity", "FT1-29, a number"),
)
def map_charge(ctx: Context, ft1: hl7v2.Segment, account: str | None = None) -> str | None:
    """FT1: transaction id 2 -> identifier, date 4 -> occurrence, posting date 5 ->
    enteredDate, type 6 -> status, code 7 -> code, quantity 10 -> quantity, extended amount
    11 -> priceOverride, diagnosis 19 -> reason, performed by 20 -> performer, ordered by 21
    -> enterer, NDC 29 -> product."""
    ctx.segment = ft1
    code = dt.cwe(ctx.comps(ft1, 7))
    if code is None:
        ctx.issue(
            ft1,
            7,
            "",
            "ChargeItem.code",
            "FT1-7 (transaction code) is empty; this FT1 is not converted",
            severity="error",
        )
        return None
    if not ctx.patient:
        return None
    charge: dict = {"resourceType": "ChargeItem"}
    identity = None
    transaction_id = ctx.value(ft1, 2)
    if transaction_id:
        identity = {"system": _sender_system(ctx), "value": transaction_id}
        charge["identifier"] = [identity]
    kind = ctx.value(ft1, 6).upper()
    charge["status"] = "billable" if kind in ("CG", "CD", "") else "unknown"
    charge["code"] = code
    charge["subject"] = ref(ctx.patient)
    if ctx.encounter:
        charge["context"] = ref(ctx.encounter)
    start = ctx.attempt(ft1, 4, "ChargeItem.occurrencePeriod.start", lambda f: dt.parse_dtm(f.c(1)))
    end = ctx.attempt(ft1, 4, "ChargeItem.occurrencePeriod.end", lambda f: dt.parse_dtm(f.c(2)))
    if start and end:
        charge["occurrencePeriod"] = {
            "start": ctx.datetime_text(start),
            "end": ctx.datetime_text(end),
        }
    elif start:
        charge["occurrenceDateTime"] = ctx.datetime_text(start)
    performers = actors.practitioners(ctx, ft1, 20)
    if performers:
        charge["performer"] = [{"actor": p} for p in performers]
    quantity = ctx.attempt(ft1, 10, "ChargeItem.quantity.value", lambda f: dt.decimal(f.c(1)))
    if quantity is not None:
        charge["quantity"] = {"value": quantity}
    price = _money(ctx, ft1, 11, "ChargeItem.priceOverride")
    if price:
        charge["priceOverride"] = price
    posted = ctx.dtm(ft1, 5, "ChargeItem.enteredDate")
    if posted:
        charge["enteredDate"] = ctx.datetime_text(posted)
    enterers = actors.practitioners(ctx, ft1, 21)
    if enterers:
        charge["enterer"] = enterers[0]
    reasons = [r for r in (dt.cwe(f) for f in ctx.reps(ft1, 19)) if r]
    if reasons:
        charge["reason"] = reasons
    product = dt.cwe(ctx.comps(ft1, 29), cs.coding_system("NDC"))
    if product:
        charge["productCodeableConcept"] = product
        map_dispensed_drug(ctx, ft1, product)
    if account:
        charge["account"] = [ref(account)]
    key = (
        None
        if identity
        else ctx.about(
            "charge",
            ctx.value(ft1, 7),
            ctx.value(ft1, 4),
            ctx.value(ft1, 1),
            str(ctx.occurrence(ft1)),
        )
    )
    return ctx.add(charge, identity=identity, key=key, global_key=key is not None)


def map_dispensed_drug(ctx: Context, ft1: hl7v2.Segment, drug: dict) -> str | None:
    """FT1-29 (NDC code) with FT1-43 (NDC quantity and unit) and FT1-42 (prescription number)
    -> MedicationDispense: the drug a charge
    bills for was handed out; whether the dispense is complete the charge does not say."""
    dispense: dict = {
        "resourceType": "MedicationDispense",
        "status": "unknown",
        "medicationCodeableConcept": drug,
        "subject": ref(ctx.patient),
    }
    quantity = _drug_quantity(ctx, ft1)
    if quantity:
        dispense["quantity"] = quantity
    if ctx.encounter:
        dispense["context"] = ref(ctx.encounter)
    prescription = ctx.value(ft1, 42)
    if prescription:
        number = {"type": dt.identifier_type("PRN"), "value": prescription}
        dispense["authorizingPrescription"] = [{"identifier": number}]
    key = ctx.about("dispense", ctx.value(ft1, 29), ctx.value(ft1, 2), str(ctx.occurrence(ft1)))
    return ctx.add(dispense, key=key)


def _drug_quantity(ctx: Context, ft1: hl7v2.Segment) -> dict | None:
    """FT1-43 (CQ: quantity ^ units as CWE) -> SimpleQuantity."""
    field = ctx.comps(ft1, 43)
    value = ctx.attempt(ft1, 43, "MedicationDispense.quantity", lambda f: dt.decimal(f.c(1)))
    if value is None:
        return None
    quantity: dict = {"value": value}
    unit = field.s(2, 2) or field.s(2, 1)
    if unit:
        quantity["unit"] = unit
    return quantity


def map_charges(ctx: Context, segments: list[hl7v2.Segment], account: str | None = None) -> None:
    """Every FT1 of a message -> ChargeItem (orders and results carry charges too); BLG-3
    (billing account) -> Account."""
    for seg in segments:
        if seg.name == "FT1":
            map_charge(ctx, seg, account)
        elif seg.name == "BLG":
            map_billing_account(ctx, seg)


@fields(
    "BLG",
    "Account",
    ("BLG-3", "Account.identifier", "CX -> Identifier; the identity of the conditional update"),
)
def map_billing_account(ctx: Context, blg: hl7v2.Segment) -> str | None:
    """BLG-3 (account id, CX) -> Account of the patient (IG: BLG -> Account)."""
    ctx.segment = blg
    number = dt.cx(ctx.comps(blg, 3))
    if number is None or not ctx.patient:
        return None
    account = {
        "resourceType": "Account",
        "identifier": [number],
        "status": "active",
        "subject": [ref(ctx.patient)],
    }
    identity = number if number.get("system") else None
    key = None if identity else ctx.about("account", number["value"])
    return ctx.add(account, identity=identity, key=key, global_key=key is not None)


def _money(ctx: Context, seg: hl7v2.Segment, n: int, target: str) -> dict | None:
    """CP (price: MO amount & currency) -> Money."""
    field = ctx.comps(seg, n)
    amount_text, currency = field.s(1, 1), field.s(1, 2).upper()
    if not amount_text:
        return None
    try:
        amount = dt.decimal(amount_text)
    except dt.BadValue as exc:
        ctx.issue(seg, n, amount_text, target, f"{exc}; left out", comp=1)
        return None
    money: dict = {"value": amount}
    if len(currency) == 3 and currency.isalpha():
        money["currency"] = currency
    return money


def _sender_system(ctx: Context) -> str:
    return ctx.sender_system() or "urn:id:unknown"
