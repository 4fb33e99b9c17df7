"""Validate a Bundle against the FHIR R4 structure definitions, as fhir.resources (R4B models,
which match R4 for every resource the maps emit) defines them.

A failure raises MappingError with origin "map" (a Bundle the map built is the map's fault),
naming the entry's resource and the FHIR path: ``Observation.valueQuantity.value``.
"""

from __future__ import annotations

from adapters.mapping.result import MappingError


def validate_full(bundle: dict) -> None:
    """Validate with fhir.resources' pydantic models (slow: ~0.3 ms per resource)."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise _error(bundle, tuple(err.get("loc", ())), err.get("msg", str(exc)))
    except (ValueError, TypeError) as exc:
        raise MappingError(f"the Bundle is not valid FHIR R4: {exc}", target="Bundle", origin="map")


def _error(bundle: dict, loc: tuple, msg: str) -> MappingError:
    path = "Bundle"
    parts = list(loc)
    if (
        len(parts) >= 3
        and parts[0] == "entry"
        and isinstance(parts[1], int)
        and parts[2] == "resource"
    ):
        try:
            path = bundle["entry"][parts[1]]["resource"]["resourceType"]
        except (KeyError, IndexError, TypeError):
            path = "Resource"
        parts = parts[3:]
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else f".{p}"
    return MappingError(f"the Bundle is not valid FHIR R4: {msg}", target=path, origin="map")


validate = validate_full
