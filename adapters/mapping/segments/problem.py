"""PRB (problem detail, PPR^PC1-PC3) -> Condition on the problem list."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.declared import fields
from adapters.mapping.segments.clinical import CONDITION_CATEGORY

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
# PRB-13 confirmation status (table 0815, as sent in practice) -> verificationStatus
CONFIRMATION = {"C": "confirmed", "P": "provisional", "D": "differential", "R": "refuted"}


def _status(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


@fields(
    "PRB",
    "Condition",
    (
        "PRB-1",
        "Condition.verificationStatus",
        "action DE (or a PC3 event) -> entered-in-error, no clinicalStatus",
        "DE",
    ),
    ("PRB-3", "Condition.code", "CWE -> CodeableConcept (required: empty drops the PRB)"),
    ("PRB-4", "Condition.identifier", "EI -> Identifier"),
    ("PRB-7", "Condition.recordedDate", "DTM -> dateTime", "a valid date"),
    (
        "PRB-9",
        "Condition.abatement",
        "DTM -> abatementDateTime, clinicalStatus resolved",
        "a valid date, not deleted",
    ),
    (
        "PRB-13",
        "Condition.verificationStatus",
        "table 0815 C/P/D/R -> confirmed/provisional/differential/refuted",
        "a known code, not deleted",
    ),
    ("PRB-16", "Condition.onset", "DTM -> onsetDateTime", "a valid date"),
    ("PRB-17", "Condition.onset", "ST -> onsetString", "PRB-16 is empty"),
)
def map_problem(ctx: Context, prb: hl7v2.Segment, event: str) -> str | None:
    """PRB: code 3 -> code, instance id 4 -> identifier, established 7 -> recordedDate,
    resolved 9 -> abatement (clinicalStatus resolved), confirmation 13 -> verificationStatus,
    onset 16 (or its text 17) -> onset; action DE (or PC3, delete) -> entered-in-error."""
    ctx.segment = prb
    code = dt.cwe(ctx.comps(prb, 3))
    if code is None or not ctx.patient:
        ctx.issue(prb, 3, "", "Condition.code", "PRB-3 (problem id) is empty", severity="error")
        return None
    condition: dict = {"resourceType": "Condition"}
    identity = ctx.scoped(dt.ei(ctx.comps(prb, 4)))
    if identity:
        condition["identifier"] = [identity]
    deleted = ctx.value(prb, 1).upper() == "DE" or event == "PC3"
    resolved = ctx.datetime(prb, 9, "Condition.abatementDateTime")
    if deleted:  # con-5: an entry made in error has no clinical status
        condition["verificationStatus"] = _status(VERIFICATION, "entered-in-error")
    else:
        condition["clinicalStatus"] = _status(CLINICAL, "resolved" if resolved else "active")
        confirmation = CONFIRMATION.get(ctx.value(prb, 13).upper())
        if confirmation:
            condition["verificationStatus"] = _status(VERIFICATION, confirmation)
    condition["category"] = [_status(CONDITION_CATEGORY, "problem-list-item")]
    condition["code"] = code
    condition["subject"] = ref(ctx.patient)
    if ctx.encounter:
        condition["encounter"] = ref(ctx.encounter)
    onset = ctx.datetime(prb, 16, "Condition.onsetDateTime")
    if onset:
        condition["onsetDateTime"] = onset
    elif ctx.value(prb, 17):
        condition["onsetString"] = ctx.text(prb, 17)
    if resolved and not deleted:
        condition["abatementDateTime"] = resolved
    recorded = ctx.datetime(prb, 7, "Condition.recordedDate")
    if recorded:
        condition["recordedDate"] = recorded
    key = None if identity else ctx.about("problem", ctx.value(prb, 3))
    return ctx.add(condition, identity=identity, key=key, global_key=key is not None)
