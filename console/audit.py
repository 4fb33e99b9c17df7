"""Write to the append-only audit log: ``record(request, "phi.reveal", target="message:42")``.

Who (the request's user), when (now), from where (client IP, user agent) and what (action, target,
a small JSON detail). Never put message bodies, passwords or tokens in ``detail``.
"""

from __future__ import annotations

from typing import Any

from console.models import AuditEvent


def client_ip(request) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it,
    # and a spoofable "from where" is worse than none. Deployments behind a proxy set REMOTE_ADDR
    # from the proxy's header in the ASGI server (e.g. uvicorn --proxy-headers).
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(request, action: str, *, target: str = "", detail: dict[str, Any] | None = None) -> None:
    """Append one audit event. ``request`` may be None for shell and task actions."""
    user = getattr(request, "user", None) if request is not None else None
    actor = user if getattr(user, "is_authenticated", False) else None
    meta = request.META if request is not None else {}
    AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor else "",
        ip=client_ip(request),
        user_agent=(meta.get("HTTP_USER_AGENT") or "")[:512],
        action=action[:64],
        target=str(target)[:255],
        detail=detail or {},
    )
