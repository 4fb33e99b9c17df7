"""NK1 -> RelatedPerson; the subscriber (IN1) and guarantor (GT1) people use the same builder."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.datatypes import Comps
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors


def relationship(code_field: Comps, table: str = "0063") -> dict | None:
    """A v2 relationship (table 0063, or 0131 contact role) as a CodeableConcept: the v3
    RoleCode the IG maps it to first, the v2 code kept beside it."""
    concept = dt.cwe(code_field, cs.V2 + table)
    if concept is None:
        return None
    code = code_field.c(1).upper()
    v3 = cs.RELATIONSHIP_V3.get(code) if table == "0063" else None
    if v3:
        concept["coding"].insert(0, {"system": cs.V3_ROLE_CODE, "code": v3})
    return concept


def related_person(
    ctx: Context,
    *,
    names: list[dict],
    relationships: list[dict],
    addresses: list[dict] | None = None,
    telecom: list[dict] | None = None,
    gender: str | None = None,
    birth_date: str | None = None,
    identifiers: list[dict] | None = None,
    period: dict | None = None,
    key: str,
) -> str | None:
    """Add a RelatedPerson of the current patient, identified by the patient, name and role."""
    if not ctx.patient or not (names or identifiers):
        return None
    person: dict = {"resourceType": "RelatedPerson"}
    if identifiers:
        person["identifier"] = identifiers
    person["patient"] = ref(ctx.patient)
    if relationships:
        person["relationship"] = relationships
    if names:
        person["name"] = names
    if telecom:
        person["telecom"] = telecom
    if gender:
        person["gender"] = gender
    if birth_date:
        person["birthDate"] = birth_date
    if addresses:
        person["address"] = addresses
    if period:
        person["period"] = period
    identity = identifiers[0] if identifiers else None
    return ctx.add(
        person,
        identity=identity,
        key=None if identity else ctx.about("related", key),
        global_key=identity is None,
    )


def person_key(names: list[dict], relation: str, birth_date: str | None) -> str:
    """One person named as the insured (IN1) and as the guarantor (GT1) is one RelatedPerson:
    the same name, relationship and birth date."""
    return f"person|{_name_key(names)}|{relation.upper()}|{birth_date or ''}"


def _name_key(names: list[dict]) -> str:
    if not names:
        return ""
    n = names[0]
    return f"{n.get('family', '')}^{'^'.join(n.get('given', []))}"


@fields(
    "NK1",
    "RelatedPerson",
    ("NK1-2", "RelatedPerson.name", "XPN -> HumanName"),
    (
        "NK1-3",
        "RelatedPerson.relationship",
        "CWE (table 0063) -> CodeableConcept, v3 RoleCode added",
    ),
    ("NK1-4", "RelatedPerson.address", "XAD -> Address"),
    ("NK1-5", "RelatedPerson.telecom", "XTN -> ContactPoint, use home"),
    ("NK1-6", "RelatedPerson.telecom", "XTN -> ContactPoint, use work"),
    ("NK1-30", "RelatedPerson.name", "XPN -> HumanName, after NK1-2's"),
    ("NK1-31", "RelatedPerson.telecom", "XTN -> ContactPoint"),
    ("NK1-32", "RelatedPerson.address", "XAD -> Address, after NK1-4's"),
)
def map_next_of_kin(ctx: Context, nk1: hl7v2.Segment) -> str | None:
    """NK1: name 2 and contact person 30, relationship 3, address 4 and 32, phones 5/6, 31 and
    40/41, start/end 8/9, contact role 7, sex 15, birth date 16, identifiers 33 (IG NK1 ->
    RelatedPerson). An NK1 that names an organisation (13) and no person (2) is the patient's
    contact at that organisation, its contact person 30-32 (IG NK1 -> Patient.contact)."""
    ctx.segment = nk1
    relationships = [
        r for r in (relationship(ctx.comps(nk1, 3)), relationship(ctx.comps(nk1, 7), "0131")) if r
    ]
    identifiers = [i for i in (dt.cx(f) for f in ctx.reps(nk1, 33)) if i]
    if not (_xpns(ctx, nk1, 2) or identifiers) and ctx.value(nk1, 13):
        _organization_contact(ctx, nk1, relationships)
        return None
    names = _xpns(ctx, nk1, 2) + _xpns(ctx, nk1, 30)
    if not names and not identifiers:
        ctx.issue(
            nk1,
            2,
            "",
            "RelatedPerson.name",
            "NK1 names no person (NK1-2, NK1-30) or organisation (NK1-13); not converted",
            severity="warning",
        )
        return None
    return related_person(
        ctx,
        names=names,
        relationships=relationships,
        addresses=_xads(ctx, nk1, 4) + _xads(ctx, nk1, 32),
        telecom=_next_of_kin_telecom(ctx, nk1),
        gender=cs.ADMINISTRATIVE_SEX.get(ctx.value(nk1, 15).upper()),
        birth_date=ctx.date(nk1, 16, "RelatedPerson.birthDate"),
        identifiers=identifiers,
        period=_period(ctx, nk1),
        key=f"{_name_key(names)}|{ctx.value(nk1, 3)}",
    )


def _xpns(ctx: Context, seg: hl7v2.Segment, n: int) -> list[dict]:
    return [name for name in (dt.xpn(f) for f in ctx.reps(seg, n)) if name]


def _xads(ctx: Context, seg: hl7v2.Segment, n: int) -> list[dict]:
    return [address for address in (dt.xad(f) for f in ctx.reps(seg, n)) if address]


def _xtns(ctx: Context, seg: hl7v2.Segment, n: int, use: str | None = None) -> list[dict]:
    return [t for t in (dt.xtn(f, use) for f in ctx.reps(seg, n)) if t]


def _next_of_kin_telecom(ctx: Context, nk1: hl7v2.Segment) -> list[dict]:
    return (
        _xtns(ctx, nk1, 5, "home")
        + _xtns(ctx, nk1, 6, "work")
        + _xtns(ctx, nk1, 31)
        + _xtns(ctx, nk1, 40, "home")
        + _xtns(ctx, nk1, 41, "work")
    )


def _period(ctx: Context, nk1: hl7v2.Segment) -> dict | None:
    start = ctx.date(nk1, 8, "RelatedPerson.period.start")
    end = ctx.date(nk1, 9, "RelatedPerson.period.end")
    if start and end and end < start:
        end = None
    return {k: v for k, v in (("start", start), ("end", end)) if v} or None


def _organization_contact(ctx: Context, nk1: hl7v2.Segment, relationships: list[dict]) -> None:
    """Patient.contact naming the organisation (NK1-13, an Organization) whose contact person
    is NK1-30 (name), NK1-31 (phones) and NK1-32 (address)."""
    patient = ctx.resource(ctx.patient) if ctx.patient else None
    organization = actors.organization(ctx, ctx.comps(nk1, 13))
    if patient is None or organization is None:
        return
    person = {
        "name": next(iter(_xpns(ctx, nk1, 30)), None),
        "telecom": _xtns(ctx, nk1, 31),
        "address": next(iter(_xads(ctx, nk1, 32)), None),
    }
    person = {k: v for k, v in person.items() if v}
    if person:
        known = ctx.resource(organization["reference"]).setdefault("contact", [])
        if person not in known:
            known.append(person)
    contact: dict = {"relationship": relationships} if relationships else {}
    contact["organization"] = organization
    patient.setdefault("contact", []).append(contact)
