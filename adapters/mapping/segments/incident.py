"""PDA (patient death and autopsy) and ACC (accident) -> Observations about the patient.

v2 gives these facts no observation code of their own, so each Observation is coded in the
hub's local code system by what it records (death-certificate, autopsy, coroner,
injury-incident); yes/no answers keep table 0136.
"""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors

OBSERVATION_CODE = cs.LOCAL_CS_PREFIX + "hub-observation"
ACCIDENT_INDICATOR = cs.LOCAL_CS_PREFIX + "accident-indicator"
YES_NO = {"Y": "Yes", "N": "No"}


def _concept(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _yes_no(ctx: Context, seg: hl7v2.Segment, n: int) -> dict | None:
    code = ctx.value(seg, n).upper()
    return {"coding": [cs.v2_coding("0136", code, YES_NO[code])]} if code in YES_NO else None


def _observation(ctx: Context, code: str, display: str, tag: str, **fields) -> str | None:
    if not ctx.patient:
        return None
    obs: dict = {"resourceType": "Observation", "status": "final"}
    obs["code"] = _concept(OBSERVATION_CODE, code, display)
    obs["subject"] = ref(ctx.patient)
    if ctx.encounter:
        obs["encounter"] = ref(ctx.encounter)
    obs.update({k: v for k, v in fields.items() if v})
    return ctx.add(obs, key=f"{ctx.segment_key()}|{tag}")


@fields(
    "PDA",
    "Observation",
    (
        "PDA-3",
        "Observation.value",
        "ID (table 0136) -> valueCodeableConcept of a death-certificate Observation",
        "Y or N",
    ),
    (
        "PDA-4",
        "Observation.effective",
        "DTM -> the death-certificate Observation's effectiveDateTime",
        "PDA-3 Y or N, a valid date",
    ),
    (
        "PDA-5",
        "Observation.performer",
        "XCN -> Practitioner who certified the death",
        "PDA-3 Y or N",
    ),
    (
        "PDA-6",
        "Observation.value",
        "ID (table 0136) -> valueCodeableConcept of an autopsy Observation",
        "Y or N",
    ),
    (
        "PDA-7",
        "Observation.effective.end",
        "DR -> the autopsy Observation's effectivePeriod (start, end)",
        "PDA-6 Y or N, valid dates",
    ),
    (
        "PDA-8",
        "Observation.performer",
        "XCN -> Practitioner who performed the autopsy",
        "PDA-6 Y or N",
    ),
    (
        "PDA-9",
        "Observation.value",
        "ID (table 0136) -> valueCodeableConcept of a coroner Observation",
        "Y or N",
    ),
)
def map_death_details(ctx: Context, pda: hl7v2.Segment) -> None:
    """PDA-3 death certified (PDA-4 when, PDA-5 by whom), PDA-6 autopsy performed (PDA-7
    period, PDA-8 performer), PDA-9 coroner indicator: one Observation each."""
    ctx.segment = pda
    certifier = actors.practitioner(ctx, ctx.comps(pda, 5))
    certified = _yes_no(ctx, pda, 3)
    if certified:
        _observation(
            ctx,
            "death-certificate",
            "Death Certificate",
            "certificate",
            effectiveDateTime=ctx.datetime(pda, 4, "Observation.effectiveDateTime"),
            performer=[certifier] if certifier else None,
            valueCodeableConcept=certified,
        )
    autopsy = _yes_no(ctx, pda, 6)
    if autopsy:
        pathologist = actors.practitioner(ctx, ctx.comps(pda, 8))
        start = ctx.datetime(pda, 7, "Observation.effectivePeriod.start")
        end = ctx.datetime(pda, 7, "Observation.effectivePeriod.end", comp=2)
        period = {k: v for k, v in (("start", start), ("end", end)) if v}
        _observation(
            ctx,
            "autopsy",
            "Autopsy",
            "autopsy",
            effectivePeriod=period,
            performer=[pathologist] if pathologist else None,
            valueCodeableConcept=autopsy,
        )
    coroner = _yes_no(ctx, pda, 9)
    if coroner:
        _observation(ctx, "coroner", "Coroner", "coroner", valueCodeableConcept=coroner)


ACCIDENT_FLAGS = (
    (5, "AJRI", "Accident Job Related Indicator"),
    (6, "ADI", "Accident Death Indicator"),
    (10, "PNI", "Police Notified Indicator"),
)


@fields(
    "ACC",
    "Observation",
    (
        "ACC-1",
        "Observation.effective",
        "DTM -> the injury-incident Observation's effectiveDateTime",
        "a valid date",
    ),
    (
        "ACC-2",
        "Observation.value",
        "CWE (table 0050) -> valueCodeableConcept",
        "ACC-8 is empty",
    ),
    (
        "ACC-5",
        "Observation.component.value",
        "ID (table 0136) -> component AJRI (job related)",
        "Y or N",
    ),
    (
        "ACC-6",
        "Observation.component.value",
        "ID (table 0136) -> component ADI (death)",
        "Y or N",
    ),
    ("ACC-7", "Observation.performer", "XCN -> Practitioner who entered the accident"),
    ("ACC-8", "Observation.value", "text -> valueString"),
    (
        "ACC-10",
        "Observation.component.value",
        "ID (table 0136) -> component PNI (police notified)",
        "Y or N",
    ),
    ("ACC-13", "Observation.identifier", "EI -> Identifier"),
)
def map_accident(ctx: Context, acc: hl7v2.Segment) -> str | None:
    """ACC: date 1 -> effective, description 8 (else the accident code 2) -> value, job
    related 5 / death 6 / police notified 10 -> components, entered by 7 -> performer,
    accident identifier 13 -> identifier."""
    ctx.segment = acc
    components = [
        {"code": _concept(ACCIDENT_INDICATOR, code, display), "valueCodeableConcept": answer}
        for n, code, display in ACCIDENT_FLAGS
        if (answer := _yes_no(ctx, acc, n))
    ]
    description = ctx.text(acc, 8)
    kind = None if description else ctx.comps(acc, 2)
    identifier = ctx.value(acc, 13)
    recorder = actors.practitioner(ctx, ctx.comps(acc, 7))
    return _observation(
        ctx,
        "injury-incident",
        "Injury Incident Description Narrative",
        "accident",
        identifier=[ctx.scoped({"value": identifier})] if identifier else None,
        effectiveDateTime=ctx.datetime(acc, 1, "Observation.effectiveDateTime"),
        performer=[recorder] if recorder else None,
        valueString=description or None,
        valueCodeableConcept=dt.cwe(kind, cs.V2 + "0050") if kind else None,
        component=components,
    )
