"""US Core on request (a channel's ``profile: us-core``): PID-10 race and PID-22 ethnic group as
the US Core race and ethnicity extensions, coded in CDC Race & Ethnicity
(urn:oid:2.16.840.1.113883.6.238); OMB categories as ``ombCategory``, finer CDC codes as
``detailed``, and the ``text`` both extensions require. Without the profile the Patient is as
the IG maps it (race and ethnicity have no base FHIR element)."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping.context import Context
from adapters.mapping.datatypes import Comps

US_CORE = "us-core"
PROFILES = (US_CORE,)
US_CORE_PATIENT = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
CDC = "urn:oid:2.16.840.1.113883.6.238"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"

OMB_RACE = {
    "1002-5": "American Indian or Alaska Native",
    "2028-9": "Asian",
    "2054-5": "Black or African American",
    "2076-8": "Native Hawaiian or Other Pacific Islander",
    "2106-3": "White",
}
OMB_ETHNICITY = {"2135-2": "Hispanic or Latino", "2186-5": "Not Hispanic or Latino"}
# v2 table 0189 (ethnic group) -> CDC; table 0005's codes are the CDC ones since v2.4
V2_ETHNICITY = {"H": "2135-2", "N": "2186-5"}
UNKNOWN = {"U": "UNK", "UNK": "UNK", "ASKU": "ASKU"}


def apply(ctx: Context, pid: hl7v2.Segment, patient: dict) -> None:
    """Add the US Core profile's race and ethnicity to ``patient`` (a no-op without them)."""
    extensions = [
        ext
        for ext in (
            _extension(ctx.reps(pid, 10), RACE, OMB_RACE, {}),
            _extension(ctx.reps(pid, 22), ETHNICITY, OMB_ETHNICITY, V2_ETHNICITY),
        )
        if ext
    ]
    patient.setdefault("meta", {}).setdefault("profile", []).append(US_CORE_PATIENT)
    if extensions:
        patient.setdefault("extension", []).extend(extensions)


def _extension(fields: list[Comps], url: str, omb: dict, from_v2: dict) -> dict | None:
    parts, texts = [], []
    for field in fields:
        code, display = field.c(1).strip(), field.c(2).strip()
        code = from_v2.get(code.upper(), code)
        if code.upper() in UNKNOWN:
            coding = {"system": NULL_FLAVOR, "code": UNKNOWN[code.upper()]}
            parts.append({"url": "ombCategory", "valueCoding": coding})
            texts.append(display or "Unknown")
        elif code in omb:
            coding = {"system": CDC, "code": code, "display": omb[code]}
            parts.append({"url": "ombCategory", "valueCoding": coding})
            texts.append(display or omb[code])
        elif _is_cdc(code):
            coding = {"system": CDC, "code": code, **({"display": display} if display else {})}
            parts.append({"url": "detailed", "valueCoding": coding})
            texts.append(display or code)
        elif display or code:
            texts.append(display or code)  # not a CDC code: said in the text only
    if not texts:
        return None
    parts.append({"url": "text", "valueString": ", ".join(dict.fromkeys(texts))})
    return {"url": url, "extension": parts}


def _is_cdc(code: str) -> bool:
    return len(code) == 6 and code[4] == "-" and code[:4].isdigit() and code[5].isdigit()
