"""The API's documentation: Swagger UI, served from this hub (drf-spectacular-sidecar), reading the
OpenAPI schema at /api/v1/schema/. Its start-up script is a static file, as the CSP requires."""

from __future__ import annotations

from django.shortcuts import render

from console.access import requires
from console.roles import Role


@requires(Role.VIEWER)
def api_docs(request):
    return render(request, "api/docs.html")
