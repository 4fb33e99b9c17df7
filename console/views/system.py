"""The System page, for admins: what protects the data at rest and whom the app connects as.

Read-only: every fact here comes from the settings and the live database connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from django.conf import settings
from django.db import connection
from django.shortcuts import render

from console import embedded
from console.access import requires
from console.db_roles import connected_role
from console.roles import Role


@dataclass(frozen=True)
class EncryptionAtRest:
    sealed: bool
    source: str  # where the key comes from, or why nothing is sealed
    key_count: int


def encryption_at_rest() -> EncryptionAtRest:
    found = list(settings.HUB_ENCRYPTION_KEYS)
    if not found:
        return EncryptionAtRest(False, "HUB_STORE_IN_CLEAR=true", 0)
    if embedded.is_generated_key(found[0]):
        return EncryptionAtRest(True, f"generated key kept in {embedded.KEY_FILE}", len(found))
    return EncryptionAtRest(True, "HUB_ENCRYPTION_KEYS", len(found))


def _server(url: str) -> str:
    """Where a URL points, without its credentials."""
    parsed = urlparse(url)
    where = f"{parsed.hostname}:{parsed.port}" if parsed.port else parsed.hostname or "local socket"
    return f"{where}, database {parsed.path.lstrip('/') or 0}"


def _user_of(url: str) -> str:
    return urlparse(url).username or "" if url else ""


@requires(Role.ADMIN)
def system(request):
    return render(
        request,
        "system/index.html",
        {
            "encryption": encryption_at_rest(),
            "role": connected_role(connection),
            "database": _server(settings.DATABASE_URL),
            "database_embedded": settings.HUB_EMBEDDED_DATABASE,
            "migrations_role": _user_of(settings.DATABASE_OWNER_URL),
            "redis": _server(settings.REDIS_URL),
        },
    )
