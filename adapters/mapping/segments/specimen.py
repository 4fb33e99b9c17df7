"""SPM -> Specimen."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields


@fields(
    "SPM",
    "Specimen",
    ("SPM-2", "Specimen.identifier", "EIP -> placer and filler Identifiers"),
    ("SPM-4", "Specimen.type", "CWE (table 0487) -> CodeableConcept"),
    ("SPM-7", "Specimen.collection.method", "CWE (table 0488) -> CodeableConcept"),
    ("SPM-8", "Specimen.collection.bodySite", "CWE (source site) -> CodeableConcept"),
    (
        "SPM-17",
        "Specimen.collection.collected",
        "DR -> collectedDateTime or collectedPeriod",
        "a valid date/time",
    ),
    ("SPM-18", "Specimen.receivedTime", "DTM -> dateTime", "a valid date/time"),
    ("SPM-21", "Specimen.status", "any reject reason -> unavailable"),
    ("SPM-24", "Specimen.condition", "CWE (table 0493) -> CodeableConcept, each repetition"),
)
def map_specimen(ctx: Context, spm: hl7v2.Segment) -> str | None:
    """SPM: ids 2 (EIP: placer & filler) -> identifier, type 4 -> type, collection method 7
    -> collection.method, source site 8 -> collection.bodySite, collected 17 (DR) ->
    collection.collected[x], received 18 -> receivedTime, condition 24 -> condition,
    reject reason 21 -> status unavailable."""
    ctx.segment = spm
    specimen: dict = {"resourceType": "Specimen"}
    ids = ctx.comps(spm, 2)
    identifiers = []
    for n, type_code in ((1, "PLAC"), (2, "FILL")):
        ei = ids.sub(n)
        ident = dt.ei(ei, type_code) if ei else None
        if ident:
            identifiers.append(ident)
    if identifiers:
        specimen["identifier"] = identifiers
    if ctx.reps(spm, 21):
        specimen["status"] = "unavailable"
    kind = dt.cwe(ctx.comps(spm, 4), cs.V2 + "0487")
    if kind:
        specimen["type"] = kind
    if ctx.patient:
        specimen["subject"] = ref(ctx.patient)
    received = ctx.dtm(spm, 18, "Specimen.receivedTime")
    if received:
        specimen["receivedTime"] = ctx.datetime_text(received)
    collection: dict = {}
    start = ctx.attempt(spm, 17, "Specimen.collection.collected[x]", lambda f: dt.parse_dtm(f.c(1)))
    end = ctx.attempt(
        spm, 17, "Specimen.collection.collectedPeriod.end", lambda f: dt.parse_dtm(f.c(2))
    )
    if start and end:
        collection["collectedPeriod"] = {
            "start": ctx.datetime_text(start),
            "end": ctx.datetime_text(end),
        }
    elif start:
        collection["collectedDateTime"] = ctx.datetime_text(start)
    method = dt.cwe(ctx.comps(spm, 7), cs.V2 + "0488")
    if method:
        collection["method"] = method
    site = dt.cwe(ctx.comps(spm, 8))
    if site:
        collection["bodySite"] = site
    if collection:
        specimen["collection"] = collection
    conditions = [c for c in (dt.cwe(f, cs.V2 + "0493") for f in ctx.reps(spm, 24)) if c]
    if conditions:
        specimen["condition"] = conditions
    identity = next((i for i in reversed(identifiers) if i.get("system")), None)
    if identity is not None:
        return ctx.add(specimen, identity=identity)
    if identifiers:  # ids without a system: unique for this patient at this sender
        key = ctx.about("specimen", *(i["value"] for i in identifiers))
        return ctx.add(specimen, key=key, global_key=True)
    return ctx.add(specimen)  # nothing identifies it beyond this message
