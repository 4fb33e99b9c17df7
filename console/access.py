"""Who may open which view: every view declares its minimum role, and one middleware enforces it.

Deny by default: a resolved view without a declaration is refused for everyone, so a new page
cannot be born open by forgetting a decorator. Declarations:

    @requires(Role.VIEWER)      the user's role must be at least VIEWER
    @requires(RESEND_EDITED)    a permission no role implies (console.roles.Permission): the
                                user must hold it (granted, or an admin) and have its role
    signed_in(view)             any signed-in user, even one without a role (sign-out)
    public(view)                no sign-in needed (the sign-in page); also exempts the view from
                                Django's LoginRequiredMiddleware

API views (Django REST framework) declare on the class, per action or HTTP method:

    required_roles = {"list": Role.VIEWER, "partial_update": Role.ANALYST, "resend": RESEND_EDITED}

and are answered in JSON: 401 without credentials, 403 with too little role.

Websocket consumers declare on the class (``@requires(Role.VIEWER)``) and refuse in connect()
when ``decide(declared(type(self)), user)`` gives a reason; the role matrix test checks that
every consumer in console.routing declares.

Anonymous users never reach this check for non-public views: LoginRequiredMiddleware (earlier in
MIDDLEWARE) sends them to the sign-in page first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.http import JsonResponse
from django.shortcuts import render

from console.roles import Permission, Role, has_permission, user_role

ATTRIBUTE: Final = "hub_min_role"
# Markers stored in ATTRIBUTE besides a Role.
PUBLIC: Final = "public"
SIGNED_IN: Final = "signed-in"

Access = Role | Permission | str


def requires(role: Role | Permission) -> Callable:
    """Declare that a view needs at least ``role``, or holds ``permission``."""
    if not isinstance(role, Role | Permission):
        raise TypeError(f"requires() takes a Role or a Permission, not {role!r}")

    def declare(view):
        setattr(view, ATTRIBUTE, role)
        return view

    return declare


def signed_in(view):
    setattr(view, ATTRIBUTE, SIGNED_IN)
    return view


def public(view):
    view = login_not_required(view)
    setattr(view, ATTRIBUTE, PUBLIC)
    return view


def declared(view, method: str | None = None) -> Access | dict | None:
    """The view's declaration; class-based views carry it on the function ``as_view()`` made.

    For an API view, the role ``method`` needs (HEAD and OPTIONS need the least any of the
    route's methods needs), or without ``method`` the whole table of the route."""
    access = getattr(view, ATTRIBUTE, None)
    if access is not None or not is_api_view(view):
        return access
    return api_access(view.cls, getattr(view, "actions", None), method)


def api_access(cls, actions: dict | None, method: str | None) -> Access | dict | None:
    """An API view class's declaration for ``method`` (viewsets map methods to actions)."""
    roles = getattr(cls, "required_roles", {})
    table = {m: roles.get(a) for m, a in actions.items()} if actions else dict(roles)
    if method is None:
        return table or None
    method = method.lower()
    if method in ("head", "options") and method not in table:
        known = [least_role(r) for r in table.values() if r is not None]
        return min(known) if known else None
    return table.get(method)


def is_api_view(view) -> bool:
    from rest_framework.views import APIView

    cls = getattr(view, "cls", None)
    return isinstance(cls, type) and issubclass(cls, APIView)


def least_role(access: Role | Permission) -> Role:
    return access.role if isinstance(access, Permission) else access


def decide(access: Access | None, user) -> str | None:
    """Why ``user`` may not open a view declared ``access``, or None when they may."""
    if access == PUBLIC:
        return None
    if not getattr(user, "is_authenticated", False):
        return "anonymous"
    if access is None:
        return "undeclared"
    if access == SIGNED_IN:
        return None
    role = user_role(user)
    if role is None:
        return "no-role"
    if role < least_role(access):
        return "too-low"
    if isinstance(access, Permission) and not has_permission(user, access):
        return "no-permission"
    return None


REASONS: Final = {
    "undeclared": "This page does not declare who may open it, so it is closed to everyone.",
    "anonymous": "Sign in to open this page.",
    "no-role": "Your account has no role; ask an admin to give you one.",
    "too-low": "This page needs the {needed} role; your role is {role}.",
    "no-permission": "This page needs the {permission} permission, which an admin grants to "
    "chosen users; your account does not have it.",
}


def denied(request, reason: str, needed: Access | None = None, *, api: bool = False):
    role = user_role(request.user)
    text = REASONS[reason].format(
        needed=least_role(needed).label if isinstance(needed, Role | Permission) else "",
        permission=needed.label if isinstance(needed, Permission) else "",
        role=role.label if role else "none",
    )
    if api:
        text = text.replace("this page", "this endpoint").replace("This page", "This endpoint")
        response = JsonResponse(
            {"detail": text, "reason": reason}, status=401 if reason == "anonymous" else 403
        )
        if reason == "anonymous":
            response["WWW-Authenticate"] = 'Bearer realm="hub"'
        return response
    return render(
        request,
        "access/denied.html",
        {"reason": reason, "explanation": text, "role": role},
        status=403,
    )


class RoleMiddleware:
    """Refuse (403) any resolved view that is undeclared or above the user's role."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        request.hub_role = user_role(request.user)  # for templates: the navbar shows it
        access = declared(view_func, request.method)
        reason = decide(access, request.user)
        if reason is None:
            return None
        return denied(request, reason, access, api=is_api_view(view_func))


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Pages send anonymous visitors to sign in; API calls are left to RoleMiddleware's 401."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if is_api_view(view_func):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
