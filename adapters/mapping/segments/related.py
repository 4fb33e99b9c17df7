"""NK1 -> RelatedPerson; the subscriber (IN1) and guarantor (GT1) people use the same builder."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.datatypes import Comps
from adapters.mapping.declared import fields


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
)
def map_next_of_kin(ctx: Context, nk1: hl7v2.Segment) -> str | None:
    """NK1: name 2 (or contact person 30), relationship 3, address 4, phones 5/6 (40/41),
    start/end 8/9, contact role 7, sex 15, birth date 16, identifiers 33."""
    ctx.segment = nk1
    names = [n for n in (dt.xpn(f) for f in ctx.reps(nk1, 2)) if n]
    if not names:
        names = [n for n in (dt.xpn(f) for f in ctx.reps(nk1, 30)) if n]
    identifiers = [i for i in (dt.cx(f) for f in ctx.reps(nk1, 33)) if i]
    relationships = [
        r for r in (relationship(ctx.comps(nk1, 3)), relationship(ctx.comps(nk1, 7), "0131")) if r
    ]
    if not names and not identifiers:
        organization = ctx.value(nk1, 13)
        if organization:
            _patient_contact_organization(ctx, organization, relationships)
        else:
            ctx.issue(
                nk1,
                2,
                "",
                "RelatedPerson.name",
                "NK1 names no person (NK1-2, NK1-30) or organisation (NK1-13); not converted",
                severity="warning",
            )
        return None
    telecom = [t for t in (dt.xtn(f, "home") for f in ctx.reps(nk1, 5)) if t]
    telecom += [t for t in (dt.xtn(f, "work") for f in ctx.reps(nk1, 6)) if t]
    telecom += [t for t in (dt.xtn(f, "home") for f in ctx.reps(nk1, 40)) if t]
    telecom += [t for t in (dt.xtn(f, "work") for f in ctx.reps(nk1, 41)) if t]
    addresses = [a for a in (dt.xad(f) for f in ctx.reps(nk1, 4)) if a]
    sex = ctx.value(nk1, 15).upper()
    start = ctx.date(nk1, 8, "RelatedPerson.period.start")
    end = ctx.date(nk1, 9, "RelatedPerson.period.end")
    period = {k: v for k, v in (("start", start), ("end", end)) if v} or None
    if period and "start" in period and "end" in period and period["end"] < period["start"]:
        del period["end"]
    return related_person(
        ctx,
        names=names,
        relationships=relationships,
        addresses=addresses,
        telecom=telecom,
        gender=cs.ADMINISTRATIVE_SEX.get(sex),
        birth_date=ctx.date(nk1, 16, "RelatedPerson.birthDate"),
        identifiers=identifiers,
        period=period,
        key=f"{_name_key(names)}|{ctx.value(nk1, 3)}",
    )


def _patient_contact_organization(ctx: Context, name: str, relationships: list[dict]) -> None:
    patient = ctx.resource(ctx.patient) if ctx.patient else None
    if patient is None:
        return
    contact: dict = {}
    if relationships:
        contact["relationship"] = relationships
    contact["organization"] = {"display": name}
    patient.setdefault("contact", []).append(contact)
