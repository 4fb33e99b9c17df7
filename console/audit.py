"""Write to the append-only audit log: ``record(request, "phi.reveal", target="message:42")``.

Who (the request's user), when (now), from where (client IP, user agent) and what (action, target,
a small JSON detail). Never put message bodies, passwords or tokens in ``detail``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings

from console.models import AuditEvent

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(request) -> str | None:
    """The client's address, for the audit log and the sign-in lockout: the one place it is read.

    REMOTE_ADDR, unless the direct peer is a trusted proxy (HUB_TRUSTED_PROXIES): then the
    X-Forwarded-For chain is walked from the right, past trusted proxies, to the first address
    no trusted proxy vouches for. A client can put anything in the header; only what the
    proxies appended is believed."""
    if request is None:
        return None
    peer = request.META.get("REMOTE_ADDR") or None
    return forwarded_client(peer, request.META.get("HTTP_X_FORWARDED_FOR", ""), trusted_proxies())


def forwarded_client(
    peer: str | None, forwarded_for: str, trusted: tuple[Network, ...]
) -> str | None:
    if not peer or not forwarded_for or not is_trusted(peer, trusted):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:  # garbage a client wrote: the last proxy's word is all we have
            break
        client = str(address)
        if not any(address in network for network in trusted):
            break
    return client


def is_trusted(peer: str | None, trusted: tuple[Network, ...] | None = None) -> bool:
    address = _address(peer or "")
    networks = trusted_proxies() if trusted is None else trusted
    return address is not None and any(address in network for network in networks)


def trusted_proxies() -> tuple[Network, ...]:
    return _networks(tuple(getattr(settings, "HUB_TRUSTED_PROXIES", ()) or ()))


@lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def record(
    request,
    action: str,
    *,
    target: str = "",
    detail: dict[str, Any] | None = None,
    actor_name: str = "",
) -> None:
    """Append one audit event. ``request`` may be None for shell and task actions; those name
    themselves with ``actor_name`` (e.g. "system:retention")."""
    user = getattr(request, "user", None) if request is not None else None
    actor = user if getattr(user, "is_authenticated", False) else None
    meta = request.META if request is not None else {}
    AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor else actor_name[:150],
        ip=client_ip(request),
        user_agent=(meta.get("HTTP_USER_AGENT") or "")[:512],
        action=action[:64],
        target=str(target)[:255],
        detail=detail or {},
    )


# Bookkeeping that changes with every save; not something a person changed.
NOT_CHANGES = {"updated_at"}


def changes(before: dict, after: dict) -> dict:
    """``{field: [before, after]}`` for every field that changed."""
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted((before.keys() | after.keys()) - NOT_CHANGES)
        if before.get(key) != after.get(key)
    }


SECRET_CHANGED = "secret changed"


def record_change(
    request, noun: str, pk, before: dict | None, after: dict, *, secrets: Sequence[str] = ()
) -> dict:
    """Audit a config object's creation (``before`` None) or update with its diff, the one way
    the API and the console pages do it. ``before``/``after`` are its public form (secrets only as
    the marker); ``secrets`` names the secrets that changed, which the public form cannot show:
    they are written as "secret changed", never their value. An update that changed nothing
    writes nothing; what changed is returned."""
    diff = changes(before or {}, after)
    detail: dict[str, Any] = {"changes": diff}
    if secrets and before is not None:
        detail["secrets"] = {place: SECRET_CHANGED for place in secrets}
    if before is None or diff or secrets:
        action = "created" if before is None else "updated"
        record(request, f"{noun}.{action}", target=f"{noun}:{pk}", detail=detail)
    return {**diff, **detail.get("secrets", {})}
