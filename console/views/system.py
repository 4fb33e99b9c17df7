"""The System page, for admins: the hub's processes, what protects the data at rest and whom
the app connects as.

Read-only: every fact here comes from the settings, the live database connection and the
heartbeats the processes write (channels_app/process_heartbeat.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from django.conf import settings
from django.db import connection
from django.shortcuts import render

from channels_app import process_heartbeat
from channels_app.models import ProcessHeartbeat
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


@dataclass(frozen=True)
class RunningProcess:
    row: ProcessHeartbeat
    silent: bool  # no beat for three periods: dead or stuck


# The order `make run` starts them in, which is also the order of the README's table.
ROLE_ORDER = ["web", "worker", "deliver", "beat", "listeners"]


def running_processes() -> list[RunningProcess]:
    rows = sorted(
        ProcessHeartbeat.objects.all(),
        key=lambda r: (_role_rank(r.role), r.host, r.started_at),
    )
    return [RunningProcess(row, process_heartbeat.is_silent(row.beat_at)) for row in rows]


def _role_rank(role: str) -> int:
    return ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)


@requires(Role.ADMIN)
def system(request):
    return render(
        request,
        "system/index.html",
        {
            "processes": running_processes(),
            "heartbeat_every_s": process_heartbeat.every_s(),
            "encryption": encryption_at_rest(),
            "role": connected_role(connection),
            "database": _server(settings.DATABASE_URL),
            "database_embedded": settings.HUB_EMBEDDED_DATABASE,
            "migrations_role": _user_of(settings.DATABASE_OWNER_URL),
            "redis": _server(settings.REDIS_URL),
        },
    )
