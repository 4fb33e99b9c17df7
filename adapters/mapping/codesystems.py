"""Code systems: v2 coding-system names to FHIR URIs, and the v2 tables the maps translate.

The table maps follow the ConceptMaps of the HL7 Version 2 to FHIR IG (table-hl7NNNN-to-...).
A code that a table does not know is never guessed: the caller keeps the v2 code as a Coding in
the v2 code system and reports it.
"""

from __future__ import annotations

from urllib.parse import quote

V2 = "http://terminology.hl7.org/CodeSystem/v2-"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
URI_SYSTEM = "urn:ietf:rfc:3986"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

# Prefix for namespaces that have no URI (a bare HD-1 such as "MSH_MRN", or a local coding
# system such as "99USI"): a URN keeps them distinct and searchable without inventing a host.
LOCAL_ID_PREFIX = "urn:id:"
LOCAL_CS_PREFIX = "urn:v2:cs:"

# v2 coding-system names (table 0396) to FHIR canonical URIs.
CODING_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNM3": SNOMED,
    "SNOMED": SNOMED,
    "SNOMED-CT": SNOMED,
    "SCT2": SNOMED,
    "UCUM": UCUM,
    "ISO+": UCUM,
    "ANS+": UCUM,
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://terminology.hl7.org/CodeSystem/MVX",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "CPT4": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "urn:oid:2.16.840.1.113883.6.285",
    "HCPT": "urn:oid:2.16.840.1.113883.6.285",
    "NPI": "http://hl7.org/fhir/sid/us-npi",
    "ISO3166_1": "urn:iso:std:iso:3166",
    "ISO3166": "urn:iso:std:iso:3166",
    "ISO639": "urn:ietf:bcp:47",
    "ISO6391": "urn:ietf:bcp:47",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
    "NCIT": "http://ncimeta.nci.nih.gov",
    "UMLS": "http://www.nlm.nih.gov/research/umls",
    "UPC": "urn:oid:2.16.840.1.113883.6.329",
    "MDC": "urn:iso:std:iso:11073:10101",
    "NUCC": "http://nucc.org/provider-taxonomy",
    "HL70396": V2 + "0396",
}


def coding_system(name: str) -> str | None:
    """FHIR system URI for a v2 coding-system name (CWE-3/CWE-6); None when no name is given."""
    name = name.strip()
    if not name:
        return None
    known = CODING_SYSTEMS.get(name.upper())
    if known:
        return known
    upper = name.upper()
    if upper.startswith("HL7") and upper[3:].isdigit():  # HL70005 -> v2-0005
        return V2 + upper[3:].zfill(4)
    if name.startswith(("http://", "https://", "urn:")):
        return name
    if _is_oid(name):
        return "urn:oid:" + name
    return LOCAL_CS_PREFIX + quote(name, safe="")


def local_namespace(name: str) -> str:
    """A system URI for an assigning authority known only by its namespace id (HD-1)."""
    return LOCAL_ID_PREFIX + quote(name.strip(), safe="")


def _is_oid(text: str) -> bool:
    parts = text.split(".")
    return len(parts) > 1 and all(p.isdigit() for p in parts) and text[0] in "012"


def hd_system(namespace: str, universal_id: str, universal_type: str) -> str | None:
    """HD (namespace ^ universal id ^ universal id type) to a system URI."""
    uid, kind = universal_id.strip(), universal_type.strip().upper()
    if uid:
        if kind == "ISO" or (not kind and _is_oid(uid)):
            return uid if uid.startswith("urn:oid:") else "urn:oid:" + uid
        if kind == "UUID":
            return uid if uid.startswith("urn:uuid:") else "urn:uuid:" + uid.lower()
        if kind in ("URI", "URL") or uid.startswith(("http://", "https://", "urn:")):
            return uid
        if not namespace.strip():
            return local_namespace(uid)
    if namespace.strip():
        return local_namespace(namespace)
    return None


# ---------------------------------------------------------------------------------- tables


def v2_coding(table: str, code: str, display: str | None = None) -> dict:
    coding = {"system": V2 + table, "code": code}
    if display:
        coding["display"] = display
    return coding


# 0001 Administrative sex -> AdministrativeGender
ADMINISTRATIVE_SEX = {
    "M": "male",
    "F": "female",
    "O": "other",
    "U": "unknown",
    "A": "other",
    "N": "other",
    "X": "other",
}

# 0002 Marital status: the IG keeps the v2 code in the v3 MaritalStatus system where one exists.
MARITAL_STATUS_V3 = {
    "A": ("L", "Legally Separated"),
    "D": ("D", "Divorced"),
    "M": ("M", "Married"),
    "S": ("S", "Never Married"),
    "W": ("W", "Widowed"),
    "C": ("C", "Common Law"),
    "P": ("T", "Domestic partner"),
    "R": ("T", "Domestic partner"),
    "I": ("I", "Interlocutory"),
    "N": ("A", "Annulled"),
    "U": ("UNK", "unknown"),
}

# 0004 Patient class -> Encounter.class (v3 ActCode where the IG maps one, else v2-0004)
PATIENT_CLASS = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
}
PATIENT_CLASS_V2 = {
    "R": "Recurring patient",
    "B": "Obstetrics",
    "C": "Commercial Account",
    "N": "Not Applicable",
    "U": "Unknown",
}

# 0085 Observation result status -> Observation.status (R4 has no "partial"; S maps to preliminary)
OBSERVATION_STATUS = {
    "A": "amended",
    "B": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "V": "final",
    "W": "entered-in-error",
    "X": "cancelled",
}

# 0123 Result status (OBR-25) -> DiagnosticReport.status
RESULT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
    "Y": "unknown",
    "Z": "unknown",
    "M": "amended",
    "N": "unknown",
}

# 0078 Abnormal flags -> v3 ObservationInterpretation (same code where both define it)
INTERPRETATION = {
    "L": "Low",
    "H": "High",
    "LL": "Critical low",
    "HH": "Critical high",
    "<": "Off scale low",
    ">": "Off scale high",
    "N": "Normal",
    "A": "Abnormal",
    "AA": "Critical abnormal",
    "U": "Significant change up",
    "D": "Significant change down",
    "B": "Better",
    "W": "Worse",
    "S": "Susceptible",
    "R": "Resistant",
    "I": "Intermediate",
    "MS": "moderately susceptible",
    "VS": "very susceptible",
    "POS": "Positive",
    "NEG": "Negative",
    "IND": "Indeterminate",
    "DET": "Detected",
    "ND": "Not detected",
    "AC": "Anti-complementary substances present",
    "TOX": "Cytotoxic substance present",
    "QCF": "Quality control failure",
    "RR": "Reactive",
    "R ": "Reactive",
    "WR": "Weakly reactive",
    "NR": "Non-reactive",
    "E": "Equivocal",
    "EX": "outside threshold",
    "HX": "above high threshold",
    "LX": "below low threshold",
    "HU": "Significantly high",
    "LU": "Significantly low",
}

# 0201 Telecommunication use code -> ContactPoint.use
TELECOM_USE = {
    "PRN": "home",
    "ORN": "home",
    "WPN": "work",
    "VHN": "home",
    "ASN": "work",
    "EMR": "temp",
    "NET": None,
    "BPN": "work",
    "PRS": "mobile",
}

# 0202 Telecommunication equipment type -> ContactPoint.system
TELECOM_SYSTEM = {
    "PH": "phone",
    "FX": "fax",
    "MD": "other",
    "CP": "phone",
    "SAT": "phone",
    "BP": "pager",
    "Internet": "email",
    "X.400": "email",
    "TDD": "other",
    "TTY": "other",
}

# 0200 Name type -> HumanName.use
NAME_USE = {
    "A": "anonymous",
    "B": "old",
    "BAD": "old",
    "C": "official",
    "D": "usual",
    "K": "anonymous",
    "L": "official",
    "M": "maiden",
    "N": "nickname",
    "NB": "old",
    "NOUSE": "old",
    "P": "usual",
    "R": "official",
    "S": "anonymous",
    "T": "temp",
    "TEMP": "temp",
    "U": "temp",
}

# 0190 Address type -> Address.use / Address.type
ADDRESS_USE = {
    "B": ("work", None),
    "BA": ("old", None),  # table 0190 BA = bad address: no longer to be used
    "BI": ("billing", None),
    "BR": ("old", None),
    "C": ("temp", None),
    "H": ("home", None),
    "HOME": ("home", None),
    "M": (None, "postal"),
    "O": ("work", None),
    "SH": (None, "postal"),
    "TEMP": ("temp", None),
    "BDL": (None, None),
    "P": ("home", None),
    "RH": ("home", None),
    "L": ("home", None),
    "V": ("temp", None),
    "N": (None, None),
}

# 0063 Relationship (NK1-3, IN1-17) -> v3 RoleCode where the IG maps one
RELATIONSHIP_V3 = {
    "BRO": "BRO",
    "CHD": "CHILD",
    "DAU": "DAUC",
    "FTH": "FTH",
    "MTH": "MTH",
    "PAR": "PRN",
    "SIB": "SIB",
    "SIS": "SIS",
    "SON": "SONC",
    "SPO": "SPS",
    "DOM": "DOMPART",
    "FND": "FRND",
    "GRD": "GUARD",
    "GRP": "GRPRN",
    "GCH": "GRNDCHILD",
    "NCH": "NCHILD",
    "SCH": "STPCHLD",
    "SEL": "ONESELF",
    "EXF": "EXT",
    "FCH": "CHLDFOST",
    "NEI": "NBOR",
    "OAD": "EXT",
    "OTH": "FAMMEMB",
    "ROM": "ROOM",
}

# 0127 Allergen type -> AllergyIntolerance.category (+ type for the intolerance codes); the
# miscellaneous codes (MA, MI) name no category.
ALLERGEN_CATEGORY = {
    "DA": ("medication", "allergy"),
    "FA": ("food", "allergy"),
    "MA": (None, "allergy"),
    "EA": ("environment", "allergy"),
    "AA": ("environment", "allergy"),
    "PA": ("environment", "allergy"),
    "LA": ("environment", "allergy"),
    "DI": ("medication", "intolerance"),
    "FI": ("food", "intolerance"),
    "MI": (None, "intolerance"),
    "EI": ("environment", "intolerance"),
}

# 0128 Allergy severity -> AllergyIntolerance.reaction.severity / criticality
ALLERGY_SEVERITY = {"SV": "severe", "MO": "moderate", "MI": "mild"}
ALLERGY_CRITICALITY = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}

# 0038 Order status (ORC-5) and 0119 order control (ORC-1) -> ServiceRequest.status
ORDER_STATUS = {
    "A": "active",
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}
ORDER_CONTROL_STATUS = {
    "NW": "active",
    "OK": "active",
    "SC": "active",
    "XO": "active",
    "XX": "active",
    "RO": "active",
    "CA": "revoked",
    "OC": "revoked",
    "CR": "revoked",
    "DC": "revoked",
    "OD": "revoked",
    "OR": "revoked",
    "DR": "revoked",
    "HD": "on-hold",
    "OH": "on-hold",
    "HR": "on-hold",
    "RL": "active",
    "OE": "active",
    "RP": "revoked",
    "RU": "revoked",
    "RE": "completed",
    "SN": "draft",
    "PA": "active",
    "CH": "active",
}

# 0085-like completion status for RXA-20 -> Immunization.status
IMMUNIZATION_STATUS = {"CP": "completed", "PA": "completed", "RE": "not-done", "NA": "not-done"}

# 0271 Document completion status (TXA-17) -> DocumentReference.docStatus
DOCUMENT_STATUS = {
    "AU": "final",
    "DI": "preliminary",
    "DO": "preliminary",
    "IN": "preliminary",
    "IP": "preliminary",
    "LA": "final",
    "PA": "preliminary",
}

# 0278 Filler status (SCH-25) -> Appointment.status
APPOINTMENT_STATUS = {
    "Pending": "pending",
    "Waitlist": "waitlist",
    "Booked": "booked",
    "Started": "arrived",
    "Complete": "fulfilled",
    "Cancelled": "cancelled",
    "Dc": "cancelled",
    "Deleted": "entered-in-error",
    "Blocked": "booked",
    "Overbook": "booked",
    "Noshow": "noshow",
}

# 0063 Relationship -> Coverage.relationship (subscriber-relationship)
SUBSCRIBER_RELATIONSHIP = {
    "SEL": "self",
    "SPO": "spouse",
    "DOM": "common",
    "CHD": "child",
    "DAU": "child",
    "SON": "child",
    "STP": "child",
    "FCH": "child",
    "PAR": "parent",
    "FTH": "parent",
    "MTH": "parent",
    "EME": "injured",
    "OTH": "other",
}
SUBSCRIBER_RELATIONSHIP_SYSTEM = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"

# ORC-1 order control / ORC-5 order status -> MedicationRequest.status
MEDICATION_ORDER_STATUS = {
    "A": "active",
    "CA": "cancelled",
    "CM": "completed",
    "DC": "stopped",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "stopped",
    "SC": "active",
}
MEDICATION_ORDER_CONTROL = {
    "NW": "active",
    "OK": "active",
    "XO": "active",
    "RO": "active",
    "RE": "completed",
    "CA": "cancelled",
    "OC": "cancelled",
    "CR": "cancelled",
    "DC": "stopped",
    "OD": "stopped",
    "DR": "stopped",
    "HD": "on-hold",
    "OH": "on-hold",
    "RL": "active",
    "SN": "draft",
    "RF": "active",
    "AF": "active",
    "DF": "stopped",
}
