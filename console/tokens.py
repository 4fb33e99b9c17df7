"""API tokens for service accounts: issued once, stored hashed, expiring, rotatable, revocable.

A token reads ``hub_<prefix>_<secret>``. The prefix is public (it names the token in lists and
audit entries); only the SHA-256 digest of the whole token is stored. A request carries it as
``Authorization: Bearer hub_…``; `TokenMiddleware` turns it into ``request.user`` with the
token's role, before the role check runs, so API views are guarded by the same deny-by-default
middleware as pages.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone

from console.models import ApiToken
from console.roles import Role

TOKEN_RE = re.compile(r"^hub_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")
# A hub token anywhere in a text, and the query parameters other APIs carry credentials in: a URL
# is written to access logs, proxies and browser history, so a credential there is refused.
TOKEN_IN_TEXT = re.compile(r"hub_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}")
CREDENTIAL_PARAMS = frozenset(
    {"token", "access_token", "auth_token", "api_key", "apikey", "api-key", "bearer", "password"}
)
# Writing last_used_at on every request would turn reads into writes; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)
DURATION_RE = re.compile(r"^(\d+)\s*([dhm])$")


@dataclass(frozen=True)
class Issued:
    token: ApiToken
    secret: str  # the whole bearer token: shown once, never stored


def parse_duration(text: str) -> timedelta:
    """'90d', '12h', '30m' -> timedelta."""
    match = DURATION_RE.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h or 30m")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def service_account(username: str):
    """The account named ``username``; a new one cannot sign in with a password."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def issue(account, role: Role, *, lifetime: timedelta, name: str = "", by=None) -> Issued:
    prefix = secrets.token_hex(6)
    secret = f"hub_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        account=account,
        name=name[:100],
        role=role.label,
        prefix=prefix,
        digest=_digest(secret),
        created_by=by,
        expires_at=timezone.now() + lifetime,
    )
    return Issued(token, secret)


@transaction.atomic
def rotate(old: ApiToken, *, overlap: timedelta, by=None) -> Issued:
    """A new token with the same account, role and lifetime; the old one keeps working for
    ``overlap`` (or until its own expiry, if sooner), so callers can switch without downtime."""
    old = ApiToken.objects.select_for_update().get(pk=old.pk)
    if not is_usable(old):
        raise ValueError("only a valid token can be rotated; issue a new one instead")
    lifetime = max(old.expires_at - old.created_at, timedelta(minutes=1))
    new = issue(old.account, Role.parse(old.role), lifetime=lifetime, name=old.name, by=by)
    old.replaced_by = new.token
    old.expires_at = min(old.expires_at, timezone.now() + overlap)
    old.save(update_fields=["replaced_by", "expires_at"])
    return new


def revoke(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def is_usable(token: ApiToken) -> bool:
    return token.revoked_at is None and token.expires_at > timezone.now()


def authenticate(bearer: str) -> ApiToken | None:
    """The usable token ``bearer`` names, or None. Constant-time comparison of digests."""
    match = TOKEN_RE.match(bearer)
    if not match:
        return None
    token = ApiToken.objects.select_related("account").filter(prefix=match.group(1)).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(bearer)):
        return None
    if not is_usable(token) or not token.account.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def credential_in_query(request) -> str | None:
    """The query parameter of ``request`` that carries a credential (by its name, or a hub
    token as its value), or None."""
    for name, values in request.GET.lists():
        if name.lower() in CREDENTIAL_PARAMS or any(TOKEN_IN_TEXT.search(v) for v in values):
            return name
    return None


def bearer_of(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


class TokenMiddleware:
    """``Authorization: Bearer hub_…`` signs the request in as the token's account, with the
    token's role (whatever groups the account is in). A bad, expired or revoked token gets 401
    at once: a caller that sent credentials must never be served as anonymous. A credential in
    the query string gets 400, whether or not it is valid: it is never used from there."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (name := credential_in_query(request)) is not None:
            return JsonResponse(
                {
                    "detail": f"Credentials are not accepted in the URL (query parameter "
                    f"{name!r}): URLs are written to logs. Send a token as "
                    "'Authorization: Bearer hub_…'."
                },
                status=400,
            )
        bearer = bearer_of(request)
        if bearer is None:
            return self.get_response(request)
        token = authenticate(bearer)
        if token is None:
            response = JsonResponse(
                {"detail": "The bearer token is not valid (unknown, expired or revoked)."},
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="hub", error="invalid_token"'
            return response
        user = token.account
        user._hub_token_role = Role.parse(token.role)
        user.backend = "django.contrib.auth.backends.ModelBackend"
        request.user = request._cached_user = user
        request.api_token = token
        # No session, no cookie: a token request is its own credential, so CSRF does not apply.
        request._dont_enforce_csrf_checks = True
        return self.get_response(request)
