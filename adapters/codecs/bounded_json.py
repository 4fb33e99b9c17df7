"""The one JSON reader for everything that comes from outside: bounded in size and in depth.

Python's ``json`` parses nested arrays and objects by recursion, so a body of a few kilobytes of
``[[[[…`` ends in a RecursionError (a 500, and whatever else that stack held) instead of a clear
refusal; and a document nested a thousand levels deep that did parse breaks every recursive
consumer after it (validation, masking, templates). The depth is measured before parsing, at C
speed: every byte but brackets dropped, strings cut out, then innermost pairs peeled off one level
at a time, at most ``max_depth`` times.
"""

from __future__ import annotations

import json
from typing import Any

# Deeper than any FHIR resource or sensible custom JSON (a Bundle with nested extensions is ~15).
MAX_DEPTH = 64

_OPENERS_CLOSERS = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


class JsonLimitError(ValueError):
    """JSON refused before it was read: too large or nested too deeply. ``limit`` names which."""

    def __init__(self, reason: str, limit: str) -> None:
        super().__init__(reason)
        self.limit = limit


def loads(
    raw: bytes | str, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None, **options: Any
) -> Any:
    """``json.loads(raw, **options)``, refused with JsonLimitError when ``raw`` is longer than
    ``max_bytes`` or nests arrays and objects deeper than ``max_depth``. Other bad JSON raises
    ``json.JSONDecodeError`` (or UnicodeDecodeError) as ``json.loads`` does."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonLimitError(f"JSON larger than {max_bytes} bytes", "size")
    check_depth(data, max_depth)
    try:
        return json.loads(data, **options)
    except RecursionError:  # malformed nesting the depth check could not pair up
        raise _too_deep(max_depth) from None


def check_depth(data: bytes, max_depth: int = MAX_DEPTH) -> None:
    """JsonLimitError if the arrays and objects in ``data`` nest deeper than ``max_depth``."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return  # cannot be deeper than the brackets it has
    brackets = _outside_strings(data).translate(_OPENERS_CLOSERS)
    for _ in range(max_depth):
        peeled = brackets.replace(b"[]", b"")
        if peeled == brackets:
            return  # all peeled, or unbalanced (the parser will say where)
        brackets = peeled
    if b"[]" in brackets:  # pairs still left max_depth levels down
        raise _too_deep(max_depth)


def _outside_strings(data: bytes) -> bytes:
    """The brackets of ``data`` that are not inside a string. Escaped backslashes and quotes go
    first, so every quote left opens or closes a string; then every byte but brackets and quotes.
    Most strings are then ``""`` (dropping one, or a close and the next open, leaves what is
    outside strings as it was); splitting the rest at the quotes leaves what is outside strings
    at the even places."""
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = unescaped.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' not in structure:
        return structure
    return b"".join(structure.split(b'"')[::2])


def _too_deep(max_depth: int) -> JsonLimitError:
    return JsonLimitError(f"JSON nested deeper than {max_depth} levels", "depth")


class BoundedDecoder(json.JSONDecoder):
    """A ``json.JSONDecoder`` with the depth bound, for APIs that take a decoder class (Django's
    ``forms.JSONField(decoder=...)``). Too deep is a ``JSONDecodeError`` there: what such APIs
    catch as bad input."""

    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        try:
            check_depth(s.encode("utf-8", errors="surrogatepass"))
            return super().decode(s, *args, **kwargs)
        except RecursionError:
            raise json.JSONDecodeError(str(_too_deep(MAX_DEPTH)), s, 0) from None
        except JsonLimitError as exc:
            raise json.JSONDecodeError(str(exc), s, 0) from None
