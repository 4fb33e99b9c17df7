"""PID (+ PD1) -> Patient; MRG -> the replaced Patient and the replaced-by link (A34/A40)."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping import us_core
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors
from adapters.mapping.segments.related import related_person

EXT = "http://hl7.org/fhir/StructureDefinition/"


@fields(
    "PID",
    "Patient",
    (
        "PID-3",
        "Patient.identifier",
        "CX -> Identifier; the MR one (else the first) is the identity of the conditional update",
    ),
    (
        "PID-5",
        "Patient.name",
        "XPN -> HumanName (family, given, prefix, suffix, use from XPN-7)",
        "a repetition has a family or given name",
    ),
    (
        "PID-6",
        "Patient.extension.where(url = 'http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName')",
        "XPN-1 -> valueString",
    ),
    (
        "PID-7",
        "Patient.birthDate",
        "DTM -> date; a time goes to the patient-birthTime extension",
        "a valid date",
    ),
    ("PID-8", "Patient.gender", "table 0001 -> AdministrativeGender", "the code is in table 0001"),
    ("PID-11", "Patient.address", "XAD -> Address"),
    ("PID-13", "Patient.telecom", "XTN -> ContactPoint, use home"),
    ("PID-14", "Patient.telecom", "XTN -> ContactPoint, use work"),
    ("PID-15", "Patient.communication.language", "CWE (table 0296) -> CodeableConcept, preferred"),
    ("PID-16", "Patient.maritalStatus", "CWE (table 0002) -> CodeableConcept"),
    (
        "PID-17",
        "Patient.extension.where(url = 'http://hl7.org/fhir/StructureDefinition/patient-religion')",
        "CWE (table 0006) -> valueCodeableConcept",
    ),
    (
        "PID-19",
        "Patient.identifier.where(system = 'http://hl7.org/fhir/sid/us-ssn')",
        "SSN -> Identifier (type SS)",
    ),
    ("PID-29", "Patient.deceased", "DTM -> deceasedDateTime (PID-30 Y alone -> deceasedBoolean)"),
)
@fields(
    "PD1",
    "Patient",
    ("PD1-3", "Patient.generalPractitioner", "XON -> Organization", "an id or a name"),
    ("PD1-4", "Patient.generalPractitioner", "XCN -> Practitioner", "an id or a name"),
)
def map_patient(ctx: Context, pid: hl7v2.Segment, pd1: hl7v2.Segment | None = None) -> str:
    """Build the Patient for ``pid``; returns its fullUrl (also kept as ``ctx.patient``)."""
    ctx.segment = pid
    patient: dict = {"resourceType": "Patient"}
    identifiers, identity = _identifiers(ctx, pid)
    if identifiers:
        patient["identifier"] = identifiers

    # PID-9 (alias, deprecated but still sent) -> more names (IG: PID-9 -> Patient.name).
    names = [n for k in (5, 9) for n in (dt.xpn(f) for f in ctx.reps(pid, k)) if n]
    names += [n for n in (dt.called_by(f) for f in ctx.reps(pid, 5)) if n]
    if names:
        patient["name"] = names
    mothers = ctx.comps(pid, 6)
    if mothers.c(1):
        patient.setdefault("extension", []).append(
            {"url": EXT + "patient-mothersMaidenName", "valueString": mothers.c(1)}
        )

    telecom = [t for t in (dt.xtn(f, "home") for f in ctx.reps(pid, 13)) if t]
    telecom += [t for t in (dt.xtn(f, "work") for f in ctx.reps(pid, 14)) if t]
    telecom += [t for t in (dt.xtn(f) for f in ctx.reps(pid, 40)) if t]  # v2.7+ telecoms
    if telecom:
        patient["telecom"] = telecom

    sex = ctx.value(pid, 8)
    if sex:
        gender = cs.ADMINISTRATIVE_SEX.get(sex.upper())
        if gender:
            patient["gender"] = gender
        else:
            ctx.issue(pid, 8, sex, "Patient.gender", "not a code of table 0001; left out")

    birth = ctx.dtm(pid, 7, "Patient.birthDate")
    if birth:
        patient["birthDate"] = birth.date_text()
        if birth.has_time:
            patient["_birthDate"] = {
                "extension": [
                    {"url": EXT + "patient-birthTime", "valueDateTime": ctx.datetime_text(birth)}
                ]
            }

    _deceased(ctx, pid, patient)

    addresses = [a for a in (dt.xad(f) for f in ctx.reps(pid, 11)) if a]
    if addresses:
        patient["address"] = addresses

    marital = ctx.comps(pid, 16)
    if marital:
        patient["maritalStatus"] = _marital(marital)

    _multiple_birth(ctx, pid, patient)

    language = dt.cwe(ctx.comps(pid, 15), cs.V2 + "0296")
    if language:
        patient["communication"] = [{"language": language, "preferred": True}]

    religion = dt.cwe(ctx.comps(pid, 17), cs.V2 + "0006")
    if religion:
        patient.setdefault("extension", []).append(
            {"url": EXT + "patient-religion", "valueCodeableConcept": religion}
        )
    birthplace = ctx.value(pid, 23)
    if birthplace:
        patient.setdefault("extension", []).append(
            {"url": EXT + "patient-birthPlace", "valueAddress": {"text": birthplace}}
        )

    if ctx.profile == us_core.US_CORE:
        us_core.apply(ctx, pid, patient)

    # Added before PD1's practitioners so the Patient leads the Bundle; PD1 fills it in after.
    full_url = ctx.add(patient, identity=identity)
    if ctx.patient is None:
        ctx.patient = full_url
        ctx.patient_key = ctx.key_of(full_url)
    _mother(ctx, pid)
    if pd1 is not None:
        ctx.segment = pd1
        _pd1(ctx, pd1, patient)
        ctx.segment = pid
    return full_url


def _mother(ctx: Context, pid: hl7v2.Segment) -> None:
    """PID-21 (mother's identifier) -> RelatedPerson with relationship MTH (IG: PID ->
    RelatedPerson)."""
    identifiers = [i for i in (dt.cx(f) for f in ctx.reps(pid, 21)) if i]
    if identifiers:
        mother = {"coding": [{"system": cs.V3_ROLE_CODE, "code": "MTH", "display": "mother"}]}
        related_person(ctx, names=[], relationships=[mother], identifiers=identifiers, key="mother")


def add_patient_details(ctx: Context, **lists: list[dict]) -> None:
    """Add what another segment says about the patient (IN2, a GT1 whose guarantor is the
    patient) to the Patient: ``identifier``, ``name``, ``address``, ``telecom`` lists, each
    item once."""
    patient = ctx.resource(ctx.patient) if ctx.patient else None
    if patient is None:
        return
    for element, items in lists.items():
        known = patient.setdefault(element, [])
        for item in items:
            if item not in known:
                known.append(item)
        if not known:
            del patient[element]


@fields(
    "DB1",
    "Patient",
    ("DB1-3", "Patient.identifier", "CX -> Identifier", "DB1-2 is PT or empty"),
)
def map_disability_identifier(ctx: Context, db1: hl7v2.Segment) -> None:
    """DB1-3 (disabled person identifier) -> Patient.identifier when DB1-2 says the disabled
    person is the patient (PT, or not said)."""
    ctx.segment = db1
    if ctx.value(db1, 2).upper() not in ("", "PT"):
        return
    identifiers = [i for i in (dt.cx(f) for f in ctx.reps(db1, 3)) if i]
    add_patient_details(ctx, identifier=identifiers)


def _identifiers(ctx: Context, pid: hl7v2.Segment) -> tuple[list[dict], dict | None]:
    """PID-3 (+ PID-2, PID-4, PID-19 SSN, PID-20 driver's licence). The identity used for the
    conditional update is the first PID-3 of type MR, else the first PID-3."""
    out = scoped_identifiers(ctx, pid, 3, "Patient.identifier.system")
    identity = next((i for i in out if _type_code(i) == "MR"), out[0] if out else None)
    for n in (2, 4):
        out += [i for i in (dt.cx(f) for f in ctx.reps(pid, n)) if i]
    ssn = ctx.value(pid, 19)
    if ssn:
        out.append({"type": dt.identifier_type("SS"), "system": cs.US_SSN, "value": ssn})
    dln = ctx.comps(pid, 20)
    if dln.c(1):
        licence: dict = {"type": dt.identifier_type("DL"), "value": dln.c(1)}
        if dln.c(2):
            licence["assigner"] = {"display": dln.c(2)}
        out.append(licence)
    return _unique(out), identity


def scoped_identifiers(ctx: Context, seg: hl7v2.Segment, n: int, target: str) -> list[dict]:
    """CX repetitions as Identifiers. An id without assigning authority (CX-4) is unique only
    at its sender, so it is scoped to the sending facility (MSH-4, else MSH-3) and reported."""
    out: list[dict] = []
    for rep, f in enumerate(ctx.reps(seg, n), start=1):
        ident = dt.cx(f)
        if ident is None:
            continue
        if "system" not in ident:
            sender_ns = _sender_namespace(ctx)
            if sender_ns:
                ident["system"] = sender_ns
                ctx.issue(
                    seg,
                    n,
                    ident["value"],
                    target,
                    f"no assigning authority (CX-4); scoped to the sender as {sender_ns}",
                    severity="information",
                    rep=rep,
                )
        out.append(ident)
    return out


def _unique(identifiers: list[dict]) -> list[dict]:
    seen, out = set(), []
    for i in identifiers:
        key = (i.get("system"), i["value"])
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def _type_code(identifier: dict) -> str:
    try:
        return identifier["type"]["coding"][0]["code"]
    except (KeyError, IndexError):
        return ""


def _sender_namespace(ctx: Context) -> str | None:
    return ctx.sender_system()


def _marital(field: dt.Comps) -> dict:
    code = field.c(1)
    v3 = cs.MARITAL_STATUS_V3.get(code) if field.c(3) in ("", "HL70002") else None
    if v3:
        concept: dict = {"coding": [{"system": cs.V3_MARITAL, "code": v3[0], "display": v3[1]}]}
        if field.c(2):
            concept["text"] = field.c(2)
        return concept
    return dt.cwe(field, cs.V2 + "0002") or {}


def _deceased(ctx: Context, pid: hl7v2.Segment, patient: dict) -> None:
    when = ctx.dtm(pid, 29, "Patient.deceasedDateTime")
    if when:
        patient["deceasedDateTime"] = ctx.datetime_text(when)
        return
    flag = ctx.value(pid, 30).upper()
    if flag in ("Y", "N", "YES", "NO"):
        patient["deceasedBoolean"] = flag.startswith("Y")
    elif flag:
        ctx.issue(pid, 30, flag, "Patient.deceasedBoolean", "expected Y or N; left out")


def _multiple_birth(ctx: Context, pid: hl7v2.Segment, patient: dict) -> None:
    order = ctx.value(pid, 25)
    flag = ctx.value(pid, 24).upper()
    if order:
        if order.isdigit():
            patient["multipleBirthInteger"] = int(order)
            return
        ctx.issue(pid, 25, order, "Patient.multipleBirthInteger", "not a number; left out")
    if flag in ("Y", "N"):
        patient["multipleBirthBoolean"] = flag == "Y"
    elif flag:
        ctx.issue(pid, 24, flag, "Patient.multipleBirthBoolean", "expected Y or N; left out")


def _pd1(ctx: Context, pd1: hl7v2.Segment, patient: dict) -> None:
    """PD1-3 patient primary facility (XON) and PD1-4 primary care provider (XCN) ->
    Patient.generalPractitioner."""
    gps = []
    for f in ctx.reps(pd1, 4):
        r = actors.practitioner(ctx, f)
        if r:
            gps.append(r)
    for f in ctx.reps(pd1, 3):
        r = actors.organization(ctx, f)
        if r:
            gps.append(r)
    if gps:
        patient["generalPractitioner"] = gps


@fields(
    "MRG",
    "Patient",
    (
        "MRG-1",
        "Patient.link",
        "CX -> the replaced Patient (inactive, link replaced-by); the survivor links replaces",
    ),
    ("MRG-7", "Patient.where(active = false).name", "XPN -> the replaced Patient's name"),
)
def map_merge(ctx: Context, mrg: hl7v2.Segment, survivor: str) -> str | None:
    """MRG-1 (prior patient identifiers) -> the replaced Patient, inactive, ``replaced-by`` the
    survivor; the survivor gets the ``replaces`` link (IG: MRG -> Patient.link)."""
    ctx.segment = mrg
    identifiers = scoped_identifiers(ctx, mrg, 1, "Patient.identifier.system")
    if not identifiers:
        ctx.issue(mrg, 1, "", "Patient.link", "MRG-1 names no prior patient identifier")
        return None
    identity = next((i for i in identifiers if _type_code(i) == "MR"), identifiers[0])
    old: dict = {
        "resourceType": "Patient",
        "identifier": identifiers,
        "active": False,
        "link": [{"other": ref(survivor), "type": "replaced-by"}],
    }
    name = dt.xpn(ctx.comps(mrg, 7))
    if name:
        old["name"] = [name]
    old_url = ctx.add(old, identity=identity)
    survivor_resource = ctx.resource(survivor)
    if survivor_resource is not None:
        survivor_resource.setdefault("link", []).append({"other": ref(old_url), "type": "replaces"})
    return old_url
