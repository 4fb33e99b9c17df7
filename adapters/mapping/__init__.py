"""HL7 v2 -> FHIR R4 canonical maps (the HL7 Version 2 to FHIR IG's segment, datatype and
message maps). ``convert(message)`` returns a validated transaction Bundle and the issues met."""

from adapters.mapping.convert import convert
from adapters.mapping.result import (
    ConversionIssue,
    ConversionResult,
    MappingError,
    UnsupportedMessageType,
)
from adapters.mapping.validation import validate


def warm_up(*, freeze_gc: bool = True) -> None:
    """Prepare a worker process: load every message map, compile the validation schema, and
    (by default) move the objects created so far out of the cyclic GC's generations.

    The fhir.resources model classes are hundreds of thousands of long-lived objects; without
    ``gc.freeze()`` every full collection walks them all and a conversion now and then pays a
    pause of several milliseconds (the p95, not the p50)."""
    import gc

    from adapters.mapping import registry, validation

    registry.supported()
    validation.warm_up()
    if freeze_gc:
        gc.collect()
        gc.freeze()


__all__ = [
    "ConversionIssue",
    "ConversionResult",
    "MappingError",
    "UnsupportedMessageType",
    "convert",
    "validate",
    "warm_up",
]
