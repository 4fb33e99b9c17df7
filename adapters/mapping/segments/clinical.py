"""AL1 -> AllergyIntolerance, DG1 -> Condition (+ Encounter.diagnosis), PR1 -> Procedure.

None of these segments carries a business identifier before v2.6 (DG1-20, PR1-19), so each is
identified by what it is about: the patient (and encounter) and its code. An A08 that sends the
same allergy again updates it instead of adding a second one.
"""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import codesystems as cs
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments import actors

ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
PARTICIPATION_FUNCTION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def _concept_key(concept: dict) -> str:
    coding = (concept.get("coding") or [{}])[0]
    return f"{coding.get('system', '')}|{coding.get('code', '')}|{concept.get('text', '')}"


@fields(
    "AL1",
    "AllergyIntolerance",
    (
        "AL1-2",
        "AllergyIntolerance.category",
        "allergen type (table 0127) -> category",
        "the type names a category",
    ),
    ("AL1-3", "AllergyIntolerance.code", "CWE -> CodeableConcept"),
    (
        "AL1-4",
        "AllergyIntolerance.criticality",
        "severity (table 0128) -> criticality",
        "the code is SV, MO or MI",
    ),
    ("AL1-5", "AllergyIntolerance.reaction.manifestation", "text -> CodeableConcept.text"),
    ("AL1-6", "AllergyIntolerance.onset", "DTM -> onsetDateTime"),
)
def map_allergy(ctx: Context, al1: hl7v2.Segment) -> str | None:
    """AL1: type 2 -> category/type, allergen 3 -> code, severity 4 -> criticality and
    reaction.severity, reactions 5 -> reaction.manifestation, identification date 6 -> onset."""
    ctx.segment = al1
    code = dt.cwe(ctx.comps(al1, 3))
    if code is None:
        ctx.issue(
            al1,
            3,
            "",
            "AllergyIntolerance.code",
            "AL1-3 (allergen) is empty; this AL1 is not converted",
            severity="error",
        )
        return None
    allergy: dict = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
    }
    kind = ctx.value(al1, 2).upper()
    category, nature = cs.ALLERGEN_CATEGORY.get(kind, (None, None))
    if nature:
        allergy["type"] = nature
    if category:
        allergy["category"] = [category]
    elif kind and kind not in ("MA", "MI"):
        ctx.issue(
            al1,
            2,
            kind,
            "AllergyIntolerance.category",
            "not a code of table 0127",
            severity="information",
        )
    severity = ctx.value(al1, 4).upper()
    if severity in cs.ALLERGY_CRITICALITY:
        allergy["criticality"] = cs.ALLERGY_CRITICALITY[severity]
    allergy["code"] = code
    if ctx.patient:
        allergy["patient"] = ref(ctx.patient)
    if ctx.encounter:
        allergy["encounter"] = ref(ctx.encounter)
    onset = ctx.datetime(al1, 6, "AllergyIntolerance.onsetDateTime")
    if onset:
        allergy["onsetDateTime"] = onset
    manifestations = [m for m in (_reaction(f) for f in ctx.reps(al1, 5)) if m]
    if manifestations:
        reaction: dict = {"manifestation": manifestations}
        if severity in cs.ALLERGY_SEVERITY:
            reaction["severity"] = cs.ALLERGY_SEVERITY[severity]
        allergy["reaction"] = [reaction]
    return ctx.add(allergy, key=ctx.about("allergy", _concept_key(code)), global_key=True)


def _reaction(field: dt.Comps) -> dict | None:
    """AL1-5 is ST before v2.6 (free text: "Hives") and CWE after: a bare value is text."""
    if len(field.parts) == 1:
        text = field.c(1)
        return {"text": text} if text else None
    return dt.cwe(field)


@fields(
    "DG1",
    "Condition",
    (
        "DG1-2",
        "Condition.code.coding.system",
        "coding method (I9, I10, SNM ...) -> the coding's system",
        "DG1-3 names no coding system",
    ),
    ("DG1-3", "Condition.code", "CWE -> CodeableConcept"),
    ("DG1-4", "Condition.code.text", "text"),
    ("DG1-5", "Condition.onset", "DTM -> onsetDateTime"),
    ("DG1-16", "Condition.asserter", "XCN -> Practitioner, the first", "an id or a name"),
    ("DG1-20", "Condition.identifier", "EI -> Identifier; the identity of the conditional update"),
)
@fields(
    "DG1",
    "Encounter",
    ("DG1-6", "Encounter.diagnosis.use", "CWE (table 0052) -> CodeableConcept", "a visit (PV1)"),
    (
        "DG1-15",
        "Encounter.diagnosis.rank",
        "priority -> positiveInt",
        "a visit (PV1), a whole number above 0",
    ),
)
def map_condition(ctx: Context, dg1: hl7v2.Segment) -> str | None:
    """DG1: code 3 (or description 4) -> code, date 5 -> onsetDateTime, clinician 16 ->
    asserter, identifier 20; type 6 and priority 15 go to Encounter.diagnosis."""
    ctx.segment = dg1
    code = dt.cwe(ctx.comps(dg1, 3), _dg1_system(ctx, dg1))
    description = ctx.value(dg1, 4)
    if code is None and description:
        code = {"text": description}
    elif code is not None and description and "text" not in code:
        code["text"] = description
    if code is None:
        ctx.issue(
            dg1,
            3,
            "",
            "Condition.code",
            "DG1-3 and DG1-4 (diagnosis) are empty; this DG1 is not converted",
            severity="error",
        )
        return None
    condition: dict = {"resourceType": "Condition"}
    identity = dt.ei(ctx.comps(dg1, 20))
    if identity:
        condition["identifier"] = [identity]
    condition["category"] = [
        {
            "coding": [
                {
                    "system": CONDITION_CATEGORY,
                    "code": "encounter-diagnosis",
                    "display": "Encounter Diagnosis",
                }
            ]
        }
    ]
    condition["code"] = code
    if ctx.patient:
        condition["subject"] = ref(ctx.patient)
    if ctx.encounter:
        condition["encounter"] = ref(ctx.encounter)
    onset = ctx.datetime(dg1, 5, "Condition.onsetDateTime")
    if onset:
        condition["onsetDateTime"] = onset
    asserters = actors.practitioners(ctx, dg1, 16)
    if asserters:
        condition["asserter"] = asserters[0]
    key = None if identity else ctx.about(ctx.encounter_key or "", "dx", _concept_key(code))
    url = ctx.add(condition, identity=identity, key=key, global_key=key is not None)
    _encounter_diagnosis(ctx, dg1, url)
    return url


def _dg1_system(ctx: Context, dg1: hl7v2.Segment) -> str | None:
    """DG1-2 (diagnosis coding method, v2.3) names the system when DG1-3 does not."""
    method = ctx.value(dg1, 2)
    return cs.coding_system(method) if method else None


def _encounter_diagnosis(ctx: Context, dg1: hl7v2.Segment, condition_url: str) -> None:
    encounter = ctx.resource(ctx.encounter) if ctx.encounter else None
    if encounter is None:
        return
    diagnosis: dict = {"condition": ref(condition_url)}
    use = dt.cwe(ctx.comps(dg1, 6), cs.V2 + "0052")
    if use:
        diagnosis["use"] = use
    rank = ctx.value(dg1, 15)
    if rank.isdigit() and int(rank) > 0:
        diagnosis["rank"] = int(rank)
    encounter.setdefault("diagnosis", []).append(diagnosis)


@fields(
    "PR1",
    "Procedure",
    ("PR1-3", "Procedure.code", "CWE -> CodeableConcept"),
    ("PR1-4", "Procedure.code.text", "text", "PR1-3 is empty"),
    ("PR1-5", "Procedure.performed", "DTM -> performedDateTime"),
    ("PR1-6", "Procedure.category", "CWE (table 0230) -> CodeableConcept"),
    (
        "PR1-8",
        "Procedure.performer.actor",
        "XCN (anesthesiologist) -> Practitioner, function ATND",
        "an id or a name",
    ),
    (
        "PR1-11",
        "Procedure.performer.actor",
        "XCN (surgeon) -> Practitioner, function PPRF",
        "an id or a name",
    ),
    (
        "PR1-12",
        "Procedure.performer.actor",
        "XCN (procedure practitioner) -> Practitioner, function SPRF",
        "an id or a name",
    ),
    ("PR1-15", "Procedure.reasonCode", "CWE (associated diagnosis) -> CodeableConcept"),
    ("PR1-19", "Procedure.identifier", "EI -> Identifier; the identity of the conditional update"),
)
def map_procedure(ctx: Context, pr1: hl7v2.Segment) -> str | None:
    """PR1: code 3 (description 4) -> code, date 5 -> performedDateTime, functional type 6 ->
    category, anesthesiologist 8 / surgeon 11 / practitioner 12 -> performer, associated
    diagnosis 15 -> reasonCode, identifier 19."""
    ctx.segment = pr1
    code = dt.cwe(ctx.comps(pr1, 3))
    description = ctx.value(pr1, 4)
    if code is None and description:
        code = {"text": description}
    if code is None:
        ctx.issue(
            pr1,
            3,
            "",
            "Procedure.code",
            "PR1-3 and PR1-4 (procedure) are empty; this PR1 is not converted",
            severity="error",
        )
        return None
    procedure: dict = {"resourceType": "Procedure"}
    identity = dt.ei(ctx.comps(pr1, 19))
    if identity:
        procedure["identifier"] = [identity]
    procedure["status"] = "completed"  # PR1 reports procedures done; v2 has no status here
    category = dt.cwe(ctx.comps(pr1, 6), cs.V2 + "0230")
    if category:
        procedure["category"] = category
    procedure["code"] = code
    if ctx.patient:
        procedure["subject"] = ref(ctx.patient)
    if ctx.encounter:
        procedure["encounter"] = ref(ctx.encounter)
    when = ctx.datetime(pr1, 5, "Procedure.performedDateTime")
    if when:
        procedure["performedDateTime"] = when
    performers = []
    for n, function in ((11, "PPRF"), (12, "SPRF"), (8, "ATND")):
        for person in actors.practitioners(ctx, pr1, n):
            performers.append(
                {
                    "function": {"coding": [{"system": PARTICIPATION_FUNCTION, "code": function}]},
                    "actor": person,
                }
            )
    if performers:
        procedure["performer"] = performers
    reason = dt.cwe(ctx.comps(pr1, 15))
    if reason:
        procedure["reasonCode"] = [reason]
    key = None
    if identity is None:
        key = ctx.about(ctx.encounter_key or "", "proc", _concept_key(code), when or "")
    return ctx.add(procedure, identity=identity, key=key, global_key=key is not None)
