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
