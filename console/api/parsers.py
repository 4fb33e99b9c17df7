"""The API's JSON parser: DRF's, through the hub's bounded reader (adapters/codecs/bounded_json),
so a body nested too deeply or too large is a 400 that says so, never a RecursionError's 500."""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from adapters.codecs import bounded_json


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        data = stream.read(limit + 1) if limit is not None else stream.read()
        try:
            return bounded_json.loads(data, max_bytes=limit, parse_constant=_no_constant)
        except bounded_json.JsonLimitError as exc:
            raise ParseError(f"JSON refused: {exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def _no_constant(name: str):
    # NaN and Infinity are not JSON; PostgreSQL's jsonb refuses them later with a 500.
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)
