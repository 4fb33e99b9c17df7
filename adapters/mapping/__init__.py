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

__all__ = [
    "ConversionIssue",
    "ConversionResult",
    "MappingError",
    "UnsupportedMessageType",
    "convert",
    "validate",
]
