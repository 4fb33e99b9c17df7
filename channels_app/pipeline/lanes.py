"""Ordered lanes: the key that puts a delivery in its lane, read from the message as received.

``Destination.ordering_key`` is an HL7 v2 path on the source message, in the syntax of the
analyst's field rules: ``PID-3.1`` (first identifier's ID), ``PID-3(2).1`` (second repetition),
``PV1-19``, ``OBR(2)-3.1``. Deliveries to that destination with the same value go out strictly
one after another, in the order the hub received their messages (even when several workers route
them concurrently: a lane also waits for any earlier message of its channel not routed yet);
different values run in parallel. A failing head holds its own lane only, until it is delivered
or fails for good. A message without a value at the path is not ordered; a blank ordering key
means the destination is not ordered at all.

The key is read from the message the process stage already parsed: a dictionary lookup, no
re-parsing and no FHIRPath.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from adapters.codecs import hl7v2

log = logging.getLogger(__name__)

# Delivery.ordering_key holds at most this many characters.
KEY_MAX = 200


@lru_cache(maxsize=256)
def parse(ordering_key: str) -> hl7v2.Path:
    """The path of an ordering key; ValueError (naming the text) when it is not one."""
    return hl7v2.Path.parse(ordering_key)


def key_for(message: hl7v2.Message | None, ordering_key: str) -> str:
    """This message's lane on a destination ordered by ``ordering_key`` ('' = not ordered)."""
    if not ordering_key or message is None:
        return ""
    try:
        path = parse(ordering_key)
    except ValueError as exc:
        log.warning("ordering key ignored: %s", exc)
        return ""
    return message.get(path).strip()[:KEY_MAX]
