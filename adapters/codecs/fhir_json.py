"""FHIR JSON as a source format: what an HTTP sender posts is already canonical, once it is a
valid R4 Bundle. A single resource becomes a one-entry transaction Bundle."""

from __future__ import annotations

from adapters.base import AdapterError
from adapters.codecs import bounded_json
from adapters.codecs.exact_json import exact_number
from adapters.mapping.validation import validate

MEDIA_TYPE = "application/fhir+json"


class NotFhir(AdapterError):
    """JSON, but not a FHIR resource (no resourceType)."""


def read(raw: bytes) -> dict:
    """The canonical Bundle for ``raw``; raises ValueError (not JSON, or JSON nested too deeply:
    bounded_json.JsonLimitError), NotFhir, or the validator's MappingError (naming the field and
    its path)."""
    resource = bounded_json.loads(raw, parse_float=exact_number)  # 1.50 stays 1.50
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise NotFhir("JSON without a resourceType is not a FHIR resource", permanent=True)
    bundle = as_bundle(resource)
    validate(bundle)
    return bundle


def as_bundle(resource: dict) -> dict:
    if resource.get("resourceType") == "Bundle":
        return resource
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
