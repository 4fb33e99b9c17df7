"""DRF's side of sign-in and roles; the decisions themselves live in console.tokens and
console.access, so the API and the pages cannot disagree."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, permissions

from console.access import api_access, decide


class TokenAuthentication(authentication.BaseAuthentication):
    """Takes the account console.tokens.TokenMiddleware signed in (no CSRF for tokens)."""

    def authenticate(self, request):
        token = getattr(request._request, "api_token", None)
        if token is None:
            return None
        return (request._request.user, token)

    def authenticate_header(self, request):
        return 'Bearer realm="hub"'


class DeclaredRole(permissions.BasePermission):
    """The route's declared role for this method, checked again inside DRF."""

    def has_permission(self, request, view):
        access = api_access(type(view), getattr(view, "action_map", None), request.method)
        return decide(access, request.user) is None


class TokenScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how tokens are sent."""

    target_class = TokenAuthentication
    name = "token"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "hub_… service token"}
