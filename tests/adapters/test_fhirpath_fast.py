"""The routing fast path gives fhirpathpy's answers: every expression below on every canonical
Bundle the corpus converts to, with two headers. Where the fast path is unsure it must say so
(and fhirpathpy answers), never answer differently."""

from __future__ import annotations

import decimal
from functools import lru_cache

import fhirpathpy
import pytest
from fhirpathpy.models import models

from adapters import mapping
from adapters.codecs import hl7v2
from adapters.fhirpath_fast import compile_fast
from adapters.routing import header_variables
from tests.adapters.codecs._corpus import CORPUS, SKIP_REASON, corpus_files

EXPRESSIONS = [
    "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()",
    "entry.resource.ofType(DiagnosticReport).status",
    "entry.resource.ofType(Observation).where(interpretation.coding.code = 'H').exists()",
    "entry.resource.ofType(Observation).count() > 3",
    "entry.resource.ofType(Observation).where(status != 'final').empty()",
    "entry.resource.ofType(Patient).exists()",
    "entry.resource.ofType(Patient).gender = 'female'",
    "entry.resource.ofType(Patient).name.family.first().upper().startsWith('E')",
    "entry.resource.ofType(Patient).birthDate = '1961-06-15'",
    "entry.resource.ofType(Patient).birthDate > '1950'",
    "entry.resource.ofType(Encounter).class.code in ('IMP' | 'EMER')",
    "entry.resource.ofType(Observation).value.exists()",
    "entry.resource.ofType(Observation).where(code.coding.code contains '718').exists()",
    "entry.resource.ofType(Observation).code.coding.system.first().endsWith('loinc.org')",
    "entry.request.method.first() = 'PUT' or entry.request.method.first() = 'POST'",
    "entry.resource.where($this.resourceType = 'Patient').exists()",
    "entry.resource.ofType(ServiceRequest).status = 'active' and %messageCode = 'ORU'",
    "%messageType = 'ADT^A01' or %triggerEvent = 'R01'",
    "%sendingFacility.lower().contains('lab')",
    "%messageCode in ('ADT' | 'ORU') and (%triggerEvent = 'A01').not()",
    "%sendingApplication != 'EPIC'",
    "%triggerEvent = '' and %sendingFacility.exists()",
    "%sendingApplication.startsWith('')",
    "entry.count() >= 2 and entry.resource.ofType(Device).empty()",
    "type = 'transaction'",
    # on nothing: every function and operator on an empty collection
    "entry.resource.ofType(Device).id.contains('x')",
    "entry.resource.ofType(Device).id.startsWith('x')",
    "entry.resource.ofType(Device).id.lower()",
    "entry.resource.ofType(Device).id.not()",
    "entry.resource.ofType(Device).id = 'x'",
    "entry.resource.ofType(Device).id != 'x'",
    "entry.resource.ofType(Device).id < 'x'",
    "entry.resource.ofType(Device).id in ('x' | 'y')",
    "('x' | 'y') contains entry.resource.ofType(Device).id",
    "entry.resource.ofType(Device).exists() or entry.resource.ofType(Device).id = 'x'",
    "entry.resource.ofType(Device).count() = 0 and entry.resource.ofType(Device).first().empty()",
    "entry.resource.ofType(Patient).exists(gender = 'male')",
    "entry.resource.ofType(Patient).active",
    "entry.resource.ofType(Patient).active.not()",
    "entry.resource.ofType(Observation).where(status = 'final').count() = 20",
    "entry.resource.ofType(Patient).gender.upper() = 'FEMALE'",
    "'ORU' in %messageCode",
    "%messageCode contains 'ORU'",
    "1 < 2 and 2.5 > 2 and 3 >= 3 and 'a' <= 'b'",
]
HEADERS = [
    header_variables("ORU^R01", "LAB", "GOOD HEALTH LAB"),
    header_variables("ADT^A01", "EPIC", "HOSP"),
    header_variables("ACK", "", ""),  # no trigger event, no sender: empty strings
]


@lru_cache(maxsize=1)
def bundles() -> list[dict]:
    out = []
    for name in corpus_files():
        try:
            out.append(mapping.convert(hl7v2.parse((CORPUS / name).read_bytes())).bundle)
        except Exception:  # not every corpus file converts (malformed on purpose, batches)
            continue
    return out


def plain(values: list) -> list:
    return [
        float(v) if isinstance(v, decimal.Decimal | int) and v is not True and v is not False else v
        for v in values
    ]


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_fast_path_agrees_with_fhirpathpy(expression):
    fast = compile_fast(expression)
    assert fast is not None, "the fast path should cover this expression"
    slow = fhirpathpy.compile(expression, models["r4"])
    answered = 0
    for bundle in bundles():
        for header in HEADERS:
            try:
                got = fast(bundle, header)
            except Exception:  # unsure: fhirpathpy answers for this one
                continue
            answered += 1
            assert plain(got) == plain(slow(bundle, header)), (expression, bundle.get("id"))
    assert answered, "the fast path answered nothing"


@pytest.mark.parametrize(
    "expression",
    [
        "entry.resource.ofType(Patient).birthDate > @1950-01-01",  # a date literal
        "Bundle.entry.exists()",  # a type name as the first step
        "entry.resource.all(id.exists())",  # a function it does not cover
        "entry.resource.ofType(Patient).name.given ~ 'adam'",  # equivalence
        "%resource.exists()",  # a standard variable
    ],
)
def test_beyond_the_fast_path_is_left_to_fhirpathpy(expression):
    assert compile_fast(expression) is None


def test_a_choice_type_is_left_to_fhirpathpy():
    observation = {"resourceType": "Observation", "valueQuantity": {"value": 5}}
    fast = compile_fast("entry.resource.value.exists()")
    with pytest.raises(Exception, match="value"):
        fast({"resourceType": "Bundle", "entry": [{"resource": observation}]}, {})
