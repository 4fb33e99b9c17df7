"""TXA + its OBX -> DocumentReference (MDM)."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors
from adapters.mapping.segments.observation import (
    TEXT_TYPES,
    concept_title,
    ed_attachment,
    observation_text,
    text_attachment,
)

# TXA-19 document availability -> DocumentReference.status
AVAILABILITY = {"AV": "current", "CA": "entered-in-error", "OB": "superseded", "UN": "current"}
WHO = "an id or a name"


@fields(
    "TXA",
    "DocumentReference",
    ("TXA-2", "DocumentReference.type", "CWE (table 0270) -> CodeableConcept"),
    ("TXA-4", "DocumentReference.date", "DTM (activity time) -> instant", "a valid date/time"),
    ("TXA-5", "DocumentReference.author", "XCN -> Practitioner, each repetition", WHO),
    (
        "TXA-6",
        "DocumentReference.content.attachment.creation",
        "DTM (origination) -> dateTime; also the date when TXA-4 gives none",
        "a valid date/time",
    ),
    ("TXA-9", "DocumentReference.author", "XCN (originator) -> Practitioner, after TXA-5", WHO),
    ("TXA-10", "DocumentReference.authenticator", "XCN -> Practitioner, the first", WHO),
    ("TXA-12", "DocumentReference.masterIdentifier", "EI -> Identifier, scoped to the sender"),
    ("TXA-16", "DocumentReference.identifier", "file name -> Identifier, scoped to the sender"),
    (
        "TXA-17",
        "DocumentReference.docStatus",
        "completion status (table 0271) -> docStatus",
        "a known code",
    ),
    (
        "TXA-19",
        "DocumentReference.status",
        "availability (table 0275): CA -> entered-in-error, OB -> superseded, else current",
    ),
    (
        "TXA-22",
        "DocumentReference.authenticator",
        "XCN (authentication person) -> Practitioner, the first",
        "TXA-10 gives none, an id or a name",
    ),
)
def map_document(ctx: Context, txa: hl7v2.Segment, observations: list[hl7v2.Segment]) -> str:
    """TXA: type 2 -> type, activity time 4 -> date, origination 6 -> attachment creation,
    author 5 (and originator 9) -> author, authenticator 10 (22) -> authenticator, unique document number 12 -> masterIdentifier,
    file name 16 -> identifier, completion 17 -> docStatus, availability 19 -> status; the
    OBX text (TX/FT/ST...) -> one text/plain attachment, each ED -> its own attachment."""
    ctx.segment = txa
    doc: dict = {"resourceType": "DocumentReference"}
    master = ctx.scoped(dt.ei(ctx.comps(txa, 12)))
    if master:
        doc["masterIdentifier"] = master
    file_name = ctx.value(txa, 16)
    if file_name:
        doc["identifier"] = [ctx.scoped({"value": file_name})]
    availability = ctx.value(txa, 19).upper()
    doc["status"] = AVAILABILITY.get(availability, "current")
    completion = ctx.value(txa, 17).upper()
    if completion in cs.DOCUMENT_STATUS:
        doc["docStatus"] = cs.DOCUMENT_STATUS[completion]
    kind = dt.cwe(ctx.comps(txa, 2), cs.V2 + "0270")
    if kind:
        doc["type"] = kind
    if ctx.patient:
        doc["subject"] = ref(ctx.patient)
    when = ctx.dtm(txa, 4, "DocumentReference.date") or ctx.dtm(txa, 6, "DocumentReference.date")
    if when:
        doc["date"] = ctx.instant_text(when)
    authors = actors.practitioners(ctx, txa, 5) + actors.practitioners(ctx, txa, 9)
    if authors:
        doc["author"] = _unique(authors)
    authenticator = actors.practitioners(ctx, txa, 10) or actors.practitioners(ctx, txa, 22)
    if authenticator:
        doc["authenticator"] = authenticator[0]
    title = concept_title(kind) if kind else None
    content = document_content(ctx, txa, observations, title)
    created = ctx.datetime(txa, 6, "DocumentReference.content.attachment.creation")
    if created:
        for item in content:
            item["attachment"]["creation"] = created
    doc["content"] = content
    if ctx.encounter:
        doc["context"] = {"encounter": [ref(ctx.encounter)]}
    identity = master or (doc.get("identifier") or [None])[0]
    return ctx.add(doc, identity=identity)


@fields(
    "OBX",
    "DocumentReference",
    (
        "OBX-5",
        "DocumentReference.content.attachment.contentType",
        "ED -> Attachment of its own: MIME type from ED-3 (else ED-2), ED-5 as Base64",
        "OBX-2 is ED",
    ),
    (
        "OBX-5",
        "DocumentReference.content.attachment.data",
        "TX, FT, ST and other text -> one line each of one text/plain attachment",
        "OBX-2 is a text type, in a document message (MDM)",
    ),
)
def document_content(
    ctx: Context, txa: hl7v2.Segment, observations: list[hl7v2.Segment], title: str | None
) -> list[dict]:
    """The document's OBX as DocumentReference.content (IG MDM_T02: OBX -> DocumentReference):
    the text lines first, as one readable attachment, then each ED as sent. Content is
    required, so a notification without OBX gets an empty text attachment and a warning."""
    content = []
    lines = []
    for obx in observations:
        vtype = ctx.value(obx, 2).upper()
        if vtype == "ED":
            content += _ed_content(ctx, obx)
        elif vtype in TEXT_TYPES or not vtype:
            text = observation_text(ctx, obx)
            if text:
                lines.append(text)
        else:
            ctx.issue(
                obx,
                2,
                vtype,
                "DocumentReference.content",
                f"a {vtype} OBX in a document is kept as text",
                origin="map",
                severity="information",
            )
            lines.append(observation_text(ctx, obx))
    if lines:
        content.insert(0, {"attachment": text_attachment("\n".join(lines), title)})
    if not content:
        ctx.issue(
            txa,
            None,
            "",
            "DocumentReference.content",
            "the message carries no document content (no OBX); an empty text/plain"
            " attachment stands in",
            severity="warning",
        )
        content.append(
            {"attachment": {"contentType": "text/plain", **({"title": title} if title else {})}}
        )
    return content


def _ed_content(ctx: Context, obx: hl7v2.Segment) -> list[dict]:
    reps = ctx.reps(obx, 5)
    if not reps:
        return []
    target = "DocumentReference.content.attachment"
    return [{"attachment": ed_attachment(ctx, obx, reps[0], target)}]


def _unique(refs: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in refs:
        if r["reference"] not in seen:
            seen.add(r["reference"])
            out.append(r)
    return out
