"""Pages of API lists: limit/offset, with a ceiling on the limit (a page holds at most MAX_LIMIT
rows, and a limit past PostgreSQL's bigint never reaches the database as a 500). Messages are
counted up to COUNT_CAP only: a search matching a hundred thousand messages is answered as fast
as one matching ten."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000


class Pages(LimitOffsetPagination):
    max_limit = MAX_LIMIT


COUNT_CAP = 1000


class MessagePages(Pages):
    """Within the counted range, the ids of up to COUNT_CAP + 1 matches are read once, newest
    first (from indexes, no row): they give the count and the page, whose rows the view then
    reads by primary key (``page_rows``). The filters (a search's key lookups) run once, not
    once for the count and again for the page."""

    def paginate_queryset(self, queryset, request, view=None):
        limit, offset = self.get_limit(request), self.get_offset(request)
        if limit is None or not hasattr(view, "page_rows") or offset + limit > COUNT_CAP:
            return super().paginate_queryset(queryset, request, view)
        self.request, self.limit, self.offset = request, limit, offset
        ids = list(queryset.values_list("pk", flat=True)[: COUNT_CAP + 1])
        self.count_capped = len(ids) > COUNT_CAP
        self.count = min(len(ids), COUNT_CAP)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        shown = ids[offset : offset + limit]
        rows = {row.pk: row for row in view.page_rows(shown)}
        return [rows[pk] for pk in shown if pk in rows]

    def get_count(self, queryset) -> int:
        found = queryset.order_by().values("pk")[: COUNT_CAP + 1].count()
        self.count_capped = found > COUNT_CAP
        return min(found, COUNT_CAP)

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["count_capped"] = self.count_capped
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count_capped"] = {
            "type": "boolean",
            "description": f"More than {COUNT_CAP} messages match: count says {COUNT_CAP}.",
        }
        return schema
