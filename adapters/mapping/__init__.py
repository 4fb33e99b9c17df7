"""HL7 v2 -> FHIR R4 canonical maps, following the HL7 Version 2 to FHIR IG's message, segment
and datatype maps. ``convert(message)`` returns a validated transaction Bundle and the issues met.

Layout: ``datatypes`` (XPN, XAD, XTN, CX, CWE, DTM, HD, PL, XCN, NM, SN ...), ``codesystems``
(v2 tables and coding-system names), ``segments/`` (one module per segment family),
``messages/`` (one module per message family, registered with ``registry.handles``),
``context`` (ids, conditional requests, issues), ``validation`` (FHIR R4 via fhir.resources).

Adding a message type is one module under ``messages/``::

    @handles("XYZ", "Z01")
    def xyz(ctx: Context) -> None:
        map_subject(ctx)                     # Patient (+ Encounter)
        for seg in ctx.message.all("ZZZ"):
            ctx.add({...}, identity=...)     # each resource, with its business identifier
"""

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
    pause of several milliseconds (the p95, not the p50).

    It also lets the youngest generation grow to `YOUNG_OBJECTS` before a collection: one
    conversion allocates a few thousand dicts and lists that its end frees by reference
    counting, and at the default (700) the collector walked them several times a message
    first, for nothing (a tenth of the CPU of a conversion)."""
    import gc

    from adapters.mapping import registry, validation

    registry.supported()
    validation.warm_up()
    if freeze_gc:
        gc.collect()
        gc.freeze()
        young, older, oldest = gc.get_threshold()
        gc.set_threshold(max(YOUNG_OBJECTS, young), older, oldest)


YOUNG_OBJECTS = 50_000


__all__ = [
    "ConversionIssue",
    "ConversionResult",
    "MappingError",
    "UnsupportedMessageType",
    "convert",
    "validate",
    "warm_up",
]
