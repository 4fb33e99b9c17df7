"""The API's JSON renderer for FHIR bodies: DRF's, writing each decimal digit for digit
(adapters/codecs/exact_json), since DRF's own encoder turns a Decimal into a float (1.50 -> 1.5)."""

from __future__ import annotations

from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

from adapters.codecs.exact_json import ExactEncoder


class _ExactApiEncoder(ExactEncoder, JSONEncoder):
    """exact_json's ``encode``, DRF's ``default`` for dates, UUIDs and the rest."""


class ExactJSONRenderer(JSONRenderer):
    encoder_class = _ExactApiEncoder
