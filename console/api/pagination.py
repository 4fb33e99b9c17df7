"""Pages of API lists: limit/offset, with a ceiling on the limit (a page holds at most MAX_LIMIT
rows, and a limit past PostgreSQL's bigint never reaches the database as a 500)."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000


class Pages(LimitOffsetPagination):
    max_limit = MAX_LIMIT
