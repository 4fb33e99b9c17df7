"""Single sign-on through an OpenID Connect provider (mozilla-django-oidc), optional.

On when ``OIDC_RP_CLIENT_ID`` is set (settings then require the provider's endpoints). The role
comes from the provider on every sign-in: the claim ``OIDC_ROLE_CLAIM`` (``groups`` by default)
lists the user's groups, ``OIDC_ROLE_MAP`` (``hub-admins:admin,hub-ops:operator``) says which role
each group gives, and the highest one wins. A user whose groups map to no role is signed in with
no role, and every page refuses them, as it does any role-less user. Signing in is audited like
any other (``login.success`` with ``{"method": "oidc", "role": ...}``).

Accounts: the username is the ``OIDC_USERNAME_CLAIM`` claim (``preferred_username``, else
``sub``). An SSO account has no usable password; a local account (one with a password) is never
taken over by a provider user of the same name: that sign-in is refused.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from django.urls import path
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from console.access import public
from console.oidc_roles import role_from_claims
from console.roles import Role, set_role

log = logging.getLogger(__name__)

LOGIN_METHOD = "hub_login_method"  # request attribute the sign-in audit reads


def clear_role(user) -> None:
    from django.contrib.auth.models import Group

    user.groups.remove(*Group.objects.filter(name__in=[r.label for r in Role]))
    user._hub_role = None


class RoleMappingBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow, with accounts keyed by username and roles from claims."""

    def verify_token(self, token, **kwargs):
        """The library checks signature, expiry and nonce; the audience (and the issuer, when
        OIDC_OP_ISSUER is set) are checked here: a token minted for another client is refused."""
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        if self.OIDC_RP_CLIENT_ID not in (audience if isinstance(audience, list) else [audience]):
            raise SuspiciousOperation("the ID token was issued for another client")
        issuer = getattr(settings, "OIDC_OP_ISSUER", "")
        if issuer and payload.get("iss") != issuer:
            raise SuspiciousOperation("the ID token comes from another issuer")
        return payload

    def get_username(self, claims) -> str:
        claim = settings.OIDC_USERNAME_CLAIM
        return str(claims.get(claim) or claims.get("sub") or "")[:150]

    def verify_claims(self, claims) -> bool:
        return bool(self.get_username(claims))

    def filter_users_by_claims(self, claims):
        # Only SSO accounts (no usable password) match; see the module doc.
        users = self.UserModel.objects.filter(username=self.get_username(claims))
        return [u for u in users if not u.has_usable_password()]

    def create_user(self, claims):
        username = self.get_username(claims)
        if self.UserModel.objects.filter(username=username).exists():
            log.warning("single sign-on refused: %r is a local account", username)
            return None
        user = self.UserModel.objects.create_user(username, email=claims.get("email") or "")
        user.set_unusable_password()
        user.save(update_fields=["password"])
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        user.first_name = str(claims.get("given_name") or "")[:150]
        user.last_name = str(claims.get("family_name") or "")[:150]
        user.email = str(claims.get("email") or "")[:254]
        user.save(update_fields=["first_name", "last_name", "email"])
        role = role_from_claims(claims, settings.OIDC_ROLE_CLAIM, settings.OIDC_ROLE_MAP)
        if role is None:
            clear_role(user)
        else:
            set_role(user, role)
        if self.request is not None:
            setattr(self.request, LOGIN_METHOD, {"method": "oidc", "role": role and role.label})
        return user


def _when_enabled(view_class):
    view = view_class.as_view()

    def sso_view(request, *args, **kwargs):
        if not getattr(settings, "OIDC_ENABLED", False):
            raise Http404("single sign-on is not configured")
        return view(request, *args, **kwargs)

    return sso_view


authenticate_view = _when_enabled(OIDCAuthenticationRequestView)
callback_view = _when_enabled(OIDCAuthenticationCallbackView)

# Added to console.urls when single sign-on is configured; both steps are public (no role yet).
urlpatterns = [
    path("oidc/authenticate/", public(authenticate_view), name="oidc_authentication_init"),
    path("oidc/callback/", public(callback_view), name="oidc_authentication_callback"),
]


def context(request) -> dict:
    """Template context: whether the sign-in page offers single sign-on."""
    return {"sso_enabled": getattr(settings, "OIDC_ENABLED", False)}
