"""OBX (+ its NTE) -> Observation; an ED value -> DocumentReference the Observation derives from.

OBX-2 picks value[x]: NM -> valueQuantity (units OBX-6, UCUM when named), SN -> Quantity with
comparator / Range / Ratio, CE/CWE/CNE -> valueCodeableConcept, ST/TX/FT -> valueString (all
repetitions, one per line), DT/TS/DTM -> valueDateTime, TM -> valueTime, NM/SN/... that do not
parse -> valueString plus an issue (the sender's text is kept, its type is not claimed).
"""

from __future__ import annotations

import base64
import binascii
import re

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.datatypes import BadValue, Comps
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors

TEXT_TYPES = {"ST", "TX", "FT", "TN", "AD", "XAD", "XPN", "XON", "XCN", "CX", "EI", "RP"}
CODED_TYPES = {"CE", "CWE", "CNE", "CF", "IS", "ID"}
DATE_TYPES = {"DT", "TS", "DTM"}

# ED type of data (ED-2) / subtype (ED-3) -> MIME type
MIME = {
    "PDF": "application/pdf",
    "RTF": "application/rtf",
    "HTML": "text/html",
    "XML": "application/xml",
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "DICOM": "application/dicom",
    "OCTET-STREAM": "application/octet-stream",
    "PLAIN": "text/plain",
    "TEXT": "text/plain",
    "MSWORD": "application/msword",
}

_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]*={0,2}\s*$")


OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@fields(
    "OBX",
    "Observation",
    ("OBX-3", "Observation.code", "CWE -> CodeableConcept"),
    (
        "OBX-5",
        "Observation.value",
        "by OBX-2: NM -> Quantity, CWE -> CodeableConcept, ST/TX -> string, SN -> Quantity/Ratio/Range, DT/TS -> dateTime",
        "OBX-3 names the observation and the value reads as the OBX-2 type",
    ),
    (
        "OBX-6",
        "Observation.value.unit",
        "CWE -> Quantity.unit/code (UCUM when the system is)",
        "OBX-5 is numeric",
    ),
    (
        "OBX-7",
        "Observation.referenceRange",
        "text -> Range (low-high, <x, >x) or text",
        "OBX-5 does not repeat",
    ),
    (
        "OBX-7",
        "Observation.component.referenceRange",
        "text -> Range on each component",
        "OBX-5 repeats (a component per value)",
    ),
    ("OBX-8", "Observation.interpretation", "table 0078 -> CodeableConcept"),
    (
        "OBX-11",
        "Observation.status",
        "result status (table 0085) -> ObservationStatus",
        "OBX-3 names the observation",
    ),
    (
        "OBX-14",
        "Observation.effective",
        "DTM -> effectiveDateTime (else the order's time)",
        "OBX-3 names the observation",
    ),
)
@fields(
    "NTE",
    "Observation",
    ("NTE-3", "Observation.note", "FT repetitions -> Annotation text", "after an OBX"),
)
def map_observation(
    ctx: Context,
    obx: hl7v2.Segment,
    *,
    notes: list[str] | None = None,
    order_key: str | None = None,
    effective: str | None = None,
    specimen: str | None = None,
    category: str | None = None,
    based_on: str | None = None,
    part_of: str | None = None,
) -> str | None:
    """Build the Observation for ``obx``; returns its fullUrl, or None when OBX-3 is empty (an
    Observation needs a code: the OBX is reported as an error and skipped)."""
    ctx.segment = obx
    code = dt.cwe(ctx.comps(obx, 3))
    if code is None:
        ctx.issue(
            obx,
            3,
            "",
            "Observation.code",
            "OBX-3 (observation identifier) is empty; this OBX is not converted",
            severity="error",
        )
        return None
    if ctx.value(obx, 2).upper() == "RP":
        pointer_report(ctx, obx, code, effective=effective, specimen=specimen, based_on=based_on)
        return None
    obs: dict = {"resourceType": "Observation"}
    identity = dt.ei(ctx.comps(obx, 21))
    if identity:
        obs["identifier"] = [identity]
    if based_on:
        obs["basedOn"] = [ref(based_on)]
    if part_of:
        obs["partOf"] = [ref(part_of)]
    obs["status"] = _status(ctx, obx)
    if category:
        obs["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}]
    obs["code"] = code
    _who_when(ctx, obx, obs, effective)

    units = dt.unit_fields(ctx.comps(obx, 6))
    _value(ctx, obx, obs, units)

    interpretation = _interpretations(ctx, obx)
    if interpretation:
        obs["interpretation"] = interpretation
    if notes:
        obs["note"] = [{"text": n} for n in notes]
    rng = dt.reference_range(ctx.text(obx, 7), units)
    if rng and obs.get("component"):  # a repeated value: the range is each value's
        for component in obs["component"]:
            component["referenceRange"] = [dict(rng)]
    elif rng:
        obs["referenceRange"] = [rng]
    method = dt.cwe(ctx.comps(obx, 17))
    if method:
        obs["method"] = method
    if specimen:
        obs["specimen"] = ref(specimen)

    key = _result_key(ctx, obx, order_key) if identity is None and order_key else None
    return ctx.add(obs, identity=identity, key=key, global_key=key is not None)


def pointer_report(
    ctx: Context,
    obx: hl7v2.Segment,
    code: dict,
    *,
    effective: str | None = None,
    specimen: str | None = None,
    based_on: str | None = None,
) -> str | None:
    """An RP value points at a report kept elsewhere (an image, a PDF on a server): that is a
    DiagnosticReport presented by URL, not an Observation value (FHIR's v2 mapping of
    DiagnosticReport.presentedForm: ED/RP). Status OBX-11, effective OBX-14, id OBX-21."""
    attachments = [a for a in (_pointer(f) for f in ctx.reps(obx, 5)) if a]
    if not attachments:
        return None
    report: dict = {"resourceType": "DiagnosticReport"}
    identity = dt.ei(ctx.comps(obx, 21))
    if identity:
        report["identifier"] = [identity]
    if based_on:
        report["basedOn"] = [ref(based_on)]
    report["status"] = _status(ctx, obx)
    report["code"] = code
    _who_when(ctx, obx, report, effective)
    if specimen:
        report["specimen"] = [ref(specimen)]
    report["presentedForm"] = attachments
    return ctx.add(report, identity=identity)


_MEDIA_TYPES = {"APPLICATION", "AUDIO", "IMAGE", "TEXT", "VIDEO", "MULTIPART", "MODEL"}


def _pointer(rp: Comps) -> dict | None:
    """RP (pointer ^ application id ^ type of data ^ subtype) -> Attachment with a URL."""
    url = rp.c(1).strip()
    if not url or any(ch.isspace() for ch in url):
        return None
    kind, subtype = rp.c(3).upper(), rp.c(4).upper()
    mime = MIME.get(subtype) or (
        f"{kind}/{subtype}".lower() if kind in _MEDIA_TYPES and subtype.isalnum() else None
    )
    return {"contentType": mime, "url": url} if mime else {"url": url}


def _status(ctx: Context, obx: hl7v2.Segment) -> str:
    """OBX-11 (table 0085) -> Observation.status; unknown (and reported) otherwise."""
    status_code = ctx.value(obx, 11)
    status = cs.OBSERVATION_STATUS.get(status_code.upper())
    if status is None:
        status = "unknown"
        ctx.issue(
            obx,
            11,
            status_code,
            "Observation.status",
            "empty or not a code of table 0085; status unknown",
            severity="warning" if status_code else "information",
        )
    return status


def _who_when(ctx: Context, obx: hl7v2.Segment, resource: dict, effective: str | None) -> None:
    """Subject, encounter, effective time (OBX-14, else the group's) and performers of a
    resource made from an OBX (an Observation, or the report of a referenced result)."""
    if ctx.patient:
        resource["subject"] = ref(ctx.patient)
    if ctx.encounter:
        resource["encounter"] = ref(ctx.encounter)
    when = ctx.datetime(obx, 14, f"{resource['resourceType']}.effectiveDateTime") or effective
    if when:
        resource["effectiveDateTime"] = when
    performers = _performers(ctx, obx)
    if performers:
        resource["performer"] = performers


def _performers(ctx: Context, obx: hl7v2.Segment) -> list[dict]:
    """OBX-16 responsible observers and OBX-23 performing organization."""
    performers = actors.practitioners(ctx, obx, 16)
    lab = actors.organization(ctx, ctx.comps(obx, 23))
    if lab:
        performers.append(lab)
    return performers


def _interpretations(ctx: Context, obx: hl7v2.Segment) -> list[dict]:
    """OBX-8 flags: v3 ObservationInterpretation where the code is one, else as sent."""
    interpretation = []
    for f in ctx.reps(obx, 8):
        flag = f.c(1)
        if flag in cs.INTERPRETATION:
            coding = {"system": cs.V3_INTERPRETATION, "code": flag}
            coding["display"] = cs.INTERPRETATION[flag]
            interpretation.append({"coding": [coding]})
        else:
            concept = dt.cwe(f, cs.V2 + "0078")
            if concept:
                interpretation.append(concept)
    return interpretation


def _result_key(ctx: Context, obx: hl7v2.Segment, order_key: str) -> str:
    """Identity from the order and the test (OBX-3 + sub-id): a corrected result for the
    same test updates the earlier Observation even when sent in a new message."""
    test = ctx.value(obx, 3) or ctx.text(obx, 3)
    key = f"{order_key}|{test}|{ctx.value(obx, 4)}"
    if ctx.known("Observation", key):  # the same test twice in one order
        key += f"|{ctx.value(obx, 1)}|{ctx.occurrence(obx)}"
    return key


def _value(ctx: Context, obx: hl7v2.Segment, obs: dict, units: dict) -> None:
    vtype = ctx.value(obx, 2).upper()
    reps = ctx.reps(obx, 5)
    if not reps:
        return
    if vtype in TEXT_TYPES or (not vtype):
        if not vtype:
            ctx.issue(
                obx,
                2,
                "",
                "Observation.value[x]",
                "OBX-2 (value type) is empty; the value is kept as text",
                severity="information",
            )
        obs["valueString"] = _text(ctx, obx)
        return
    if vtype == "ED":
        _attachment(ctx, obx, obs, reps[0])
        return
    if len(reps) > 1:
        # A repeating value: one component per repetition, each under the OBX-3 code.
        components = [_component(ctx, obx, vtype, f, units, obs["code"]) for f in reps]
        obs["component"] = [c for c in components if c]
        return
    _typed_value(ctx, obx, vtype, reps[0], units, obs, _text(ctx, obx))


def _component(
    ctx: Context, obx: hl7v2.Segment, vtype: str, field: Comps, units: dict, code: dict
) -> dict | None:
    component: dict = {"code": code}
    text = hl7v2.unescape(field.source, ctx.enc)
    _typed_value(ctx, obx, vtype, field, units, component, text)
    return component if len(component) > 1 else None


def _typed_value(
    ctx: Context,
    obx: hl7v2.Segment,
    vtype: str,
    field: Comps,
    units: dict,
    target: dict,
    text: str,
) -> None:
    """One OBX-5 value of type ``vtype`` -> value[x] of ``target`` (an Observation or one of
    its components); a value that does not parse is kept as ``text``."""
    try:
        if vtype == "NM":
            number = dt.decimal(field.c(1))
            if number is not None:
                target["valueQuantity"] = dt.quantity(number, units)
        elif vtype == "SN":
            name, value = dt.sn(field, units)
            target[name] = value
        elif vtype in CODED_TYPES:
            concept = dt.cwe(field)
            if concept:
                target["valueCodeableConcept"] = concept
        elif vtype in DATE_TYPES:
            parsed = dt.parse_dtm(field.c(1))
            if parsed:
                target["valueDateTime"] = ctx.datetime_text(parsed)
        elif vtype == "TM":
            target["valueTime"] = _time(field.c(1))
        elif vtype in ("CQ",):
            number = dt.decimal(field.c(1))
            if number is not None:
                target["valueQuantity"] = dt.quantity(number, field.sub(2) or units)
        else:
            ctx.issue(
                obx,
                2,
                vtype,
                "Observation.value[x]",
                f"value type {vtype} has no FHIR map; the value is kept as text",
                origin="map",
                severity="information",
            )
            target["valueString"] = text
    except BadValue as exc:
        ctx.issue(
            obx,
            5,
            text,
            "Observation.value[x]",
            f"not a valid {vtype} value ({exc}); kept as valueString",
            comp=exc.component,
        )
        if vtype == "SN":  # as a reader writes it: ">^2/38" is ">2/38", not ER7
            text = "".join(field.c(n) for n in range(1, 5))
        if text:
            target["valueString"] = text


def _text(ctx: Context, obx: hl7v2.Segment) -> str:
    """Every repetition of OBX-5 as text, one per line (TX/FT send one line per repetition)."""
    raw = obx[5]
    lines = [hl7v2.unescape(r, ctx.enc) for r in raw.split(ctx.enc.repetition)]
    return "\n".join(line.rstrip() for line in lines if line.strip() != '""').strip("\n")


def _time(text: str) -> str:
    m = re.match(r"^(\d{2})(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?$", text.strip())
    if not m or int(m[1]) > 23 or int(m[2] or 0) > 59 or int(m[3] or 0) > 59:
        raise BadValue("not an HL7 time; expected HH[MM[SS[.S]]]")
    return f"{m[1]}:{m[2] or '00'}:{m[3] or '00'}{m[4] or ''}"


def ed_attachment(ctx: Context, obx: hl7v2.Segment, ed: Comps, target: str) -> dict:
    """ED (source ^ type of data ^ subtype ^ encoding ^ data) -> Attachment (MIME type from the
    subtype or type, data as Base64 whatever the encoding sent: Base64, Hex or plain text)."""
    kind, subtype, encoding, data = ed.c(2), ed.c(3), ed.c(4).upper(), ed.raw(5)
    data = hl7v2.unescape(data, ctx.enc).strip()
    attachment: dict = {
        "contentType": MIME.get(subtype.upper())
        or MIME.get(kind.upper())
        or "application/octet-stream"
    }
    if not data:
        return attachment
    if encoding in ("BASE64", "B64"):
        compact = "".join(data.split())
        if _BASE64.match(compact) and len(compact) % 4 == 0:
            try:
                base64.b64decode(compact, validate=True)
                attachment["data"] = compact
            except (binascii.Error, ValueError):
                pass
        if "data" not in attachment:
            ctx.issue(
                obx,
                5,
                data[:40],
                target + ".data",
                "ED-5 is not valid Base64; the data is left out",
                comp=5,
            )
    elif encoding == "HEX":
        try:
            attachment["data"] = base64.b64encode(bytes.fromhex(data)).decode("ascii")
        except ValueError:
            ctx.issue(
                obx,
                5,
                data[:40],
                target + ".data",
                "ED-5 is not valid hex; the data is left out",
                comp=5,
            )
    else:  # "A" (ASCII) or none: the text itself
        attachment["data"] = base64.b64encode(data.encode("utf-8")).decode("ascii")
    return attachment


def text_attachment(text: str, title: str | None = None) -> dict:
    attachment: dict = {
        "contentType": "text/plain; charset=utf-8",
        "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
    }
    if title:
        attachment["title"] = title
    return attachment


def concept_title(concept: dict) -> str | None:
    return concept.get("text") or next(
        (c.get("display") for c in concept.get("coding", []) if c.get("display")), None
    )


def _attachment(ctx: Context, obx: hl7v2.Segment, obs: dict, ed: Comps) -> None:
    """ED value: R4 Observation has no Attachment value, so the IG's OBX->DocumentReference
    map holds the data and the Observation derives from it."""
    attachment = ed_attachment(ctx, obx, ed, "DocumentReference.content.attachment")
    title = concept_title(obs["code"])
    if title:
        attachment["title"] = title
    doc: dict = {"resourceType": "DocumentReference", "status": "current", "type": obs["code"]}
    if ctx.patient:
        doc["subject"] = ref(ctx.patient)
    doc["content"] = [{"attachment": attachment}]
    ctx.segment = obx
    doc_url = ctx.add(doc, key=f"{ctx.segment_key()}|ED")
    obs["derivedFrom"] = [ref(doc_url)]


def observation_text(ctx: Context, obx: hl7v2.Segment) -> str:
    """OBX-5 as text, every repetition on its own line (for report and document bodies)."""
    return _text(ctx, obx)


def has_code(ctx: Context, obx: hl7v2.Segment) -> bool:
    """Whether OBX-3 carries anything (cheap: the Observation map reads it properly)."""
    raw = obx[3]
    enc = ctx.enc
    for ch in (enc.component, enc.subcomponent, enc.repetition, " ", '"'):
        raw = raw.replace(ch, "")
    return bool(raw)
