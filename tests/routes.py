"""The URLconf walked route by route, and a URL that reaches each route."""

from __future__ import annotations

import re

from django.urls import URLPattern, URLResolver, get_resolver

# Django's `<int:pk>` and DRF's router regex `(?P<pk>[^/.]+)`.
PK = re.compile(r"<int:\w+>|\(\?P<\w+>\[\^/\.\]\+\)")


def all_patterns(resolver=None, prefix=""):
    """(pattern, route) for every view, the route being the prefixes and pattern joined."""
    resolver = resolver or get_resolver()
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            yield from all_patterns(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield p, prefix + str(p.pattern)


def url_of(route: str, pk: int = 1) -> str:
    """A URL the route matches, with ``pk`` for its id."""
    return "/" + PK.sub(str(pk), route).replace("^", "").replace("$", "").replace("\\.", ".")
