"""Sign-in hardening and response headers.

- Every sign-in, failed sign-in and sign-out is written to the audit log (Django's auth signals).
- Lockout: 5 failed sign-ins for one username from one IP within 15 minutes refuse further
  attempts for that pair until the window has passed. The failures are counted from the audit
  log itself, so the count is durable, shared by every web process and needs no second store;
  an attempt made while locked is audited as ``login.locked`` and does not extend the lock.
- Idle timeout: a session unused for SESSION_IDLE_TIMEOUT seconds is signed out. Background
  htmx refreshes (GET) do not count as use, or an open dashboard would never time out.
- Behind a proxy: forwarded headers count only from HUB_TRUSTED_PROXIES (ProxyHeadersMiddleware);
  the client address for lockout and audit comes from ``audit.client_ip`` alone.
- Security headers on every response: CSP (self only, no inline styles), Referrer-Policy, X-Content-Type-Options
  (Django's SecurityMiddleware sets those two and HSTS; X-Frame-Options comes from Django's
  clickjacking middleware).
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.dispatch import receiver
from django.shortcuts import resolve_url
from django.utils import timezone

from console import audit
from console.models import AuditEvent

LOCKOUT_ATTEMPTS = 5
LOCKOUT_WINDOW = timedelta(minutes=15)

LOGIN_OK = "login.success"
LOGIN_FAILED = "login.failed"
LOGIN_LOCKED = "login.locked"
LOGOUT = "logout"
# An admin lifting a lock writes this event: the username as target, the locked IP in detail.
LOGIN_UNLOCKED = "login.unlocked"


# --- lockout -------------------------------------------------------------------------------


def locked_until(username: str, ip: str | None):
    """When the lock on ``username`` from ``ip`` lifts, or None when it is not locked."""
    if not username:
        return None
    since = timezone.now() - LOCKOUT_WINDOW
    recent = AuditEvent.objects.filter(target=username[:255], at__gte=since)
    events = recent.filter(ip=ip)
    # A success from that address, or an admin's unlock for it, starts the count afresh.
    reset = (
        recent.filter(
            Q(action=LOGIN_OK, ip=ip) | Q(action=LOGIN_UNLOCKED, detail__ip=ip and str(ip))
        )
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )
    if reset is not None:
        events = events.filter(at__gt=reset)
    failures = list(
        events.filter(action=LOGIN_FAILED)
        .order_by("-at")
        .values_list("at", flat=True)[:LOCKOUT_ATTEMPTS]
    )
    if len(failures) < LOCKOUT_ATTEMPTS:
        return None
    return failures[-1] + LOCKOUT_WINDOW


def unlock(request, username: str, ip: str | None) -> None:
    """Lift the lock on ``username`` from ``ip`` (an admin's act, audited as such)."""
    audit.record(request, LOGIN_UNLOCKED, target=username, detail={"ip": ip})


def lockout_message(until) -> str:
    minutes = max(1, math.ceil((until - timezone.now()).total_seconds() / 60))
    return (
        f"Too many failed sign-ins for this account from your address. "
        f"Sign-in is locked; try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )


class LockoutBackend:
    """First in AUTHENTICATION_BACKENDS: refuses a locked username+IP before any password check,
    for every way in (the sign-in page, the admin, anything calling authenticate())."""

    def authenticate(self, request, username=None, **credentials):
        if username and locked_until(username, audit.client_ip(request)):
            raise PermissionDenied("locked")
        return None

    # No get_user(): this backend never signs anyone in, so no session may name it (and the test
    # client's force_login() skips it).


class LoginForm(AuthenticationForm):
    """The sign-in form: says so plainly when the account is locked."""

    locked_message = ""

    def get_invalid_login_error(self):
        username = self.cleaned_data.get("username") or ""
        until = locked_until(username, audit.client_ip(self.request))
        if until is None:
            return super().get_invalid_login_error()
        self.locked_message = lockout_message(until)
        return forms.ValidationError(self.locked_message, code="locked")


# --- audit of sign-in and sign-out ---------------------------------------------------------


@receiver(user_logged_in, dispatch_uid="console.audit.login")
def _audit_login(sender, request, user, **kwargs):
    if request is not None:
        request.session[LAST_SEEN] = int(time.time())
    # How they signed in, when not with a password (single sign-on says so, and the role it gave).
    method = getattr(request, "hub_login_method", None) if request is not None else None
    audit.record(request, LOGIN_OK, target=user.get_username(), detail=method)


@receiver(user_login_failed, dispatch_uid="console.audit.login_failed")
def _audit_login_failed(sender, credentials, request=None, **kwargs):
    # Only the username tried: the credentials carry the (masked) password and nothing else of use.
    username = str(credentials.get("username") or "")[:255]
    locked = locked_until(username, audit.client_ip(request)) is not None
    audit.record(request, LOGIN_LOCKED if locked else LOGIN_FAILED, target=username)


@receiver(user_logged_out, dispatch_uid="console.audit.logout")
def _audit_logout(sender, request, user, **kwargs):
    if user is None:
        return
    reason = getattr(request, "_logout_reason", "") if request is not None else ""
    audit.record(
        request,
        LOGOUT,
        target=user.get_username(),
        detail={"reason": reason} if reason else None,
    )


# --- idle timeout ----------------------------------------------------------------------------

LAST_SEEN = "hub_last_seen"


def _is_htmx(request) -> bool:
    # Read the header: django-htmx's request.htmx is set by a middleware that runs after this one.
    return request.headers.get("HX-Request") == "true"


class IdleTimeoutMiddleware:
    """Signs out a session left unused for SESSION_IDLE_TIMEOUT seconds (0 turns it off).

    Place after AuthenticationMiddleware. An htmx request that finds itself signed out is told to
    load the sign-in page as a whole page (HX-Redirect) instead of swapping it into a fragment."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        timeout = getattr(settings, "SESSION_IDLE_TIMEOUT", 0)
        user = getattr(request, "user", None)
        if timeout and user is not None and user.is_authenticated:
            now = int(time.time())
            last_seen = request.session.get(LAST_SEEN)
            if last_seen is not None and now - last_seen > timeout:
                request._logout_reason = "idle"
                logout(request)
                return self._to_login(request)
            background = request.method == "GET" and _is_htmx(request)
            # Written at most once a minute: a session save on every click is not free.
            if last_seen is None or (not background and now - last_seen >= min(60, timeout // 2)):
                request.session[LAST_SEEN] = now
        return self.get_response(request)

    @staticmethod
    def _to_login(request):
        from django.contrib.auth.views import redirect_to_login

        if _is_htmx(request):
            from django_htmx.http import HttpResponseClientRedirect

            return HttpResponseClientRedirect(resolve_url(settings.LOGIN_URL))
        return redirect_to_login(request.get_full_path())


# --- headers ----------------------------------------------------------------------------------

# Everything from this origin only. Bootstrap's CSS embeds small SVGs as data: URIs (img-src).
# No inline styles either: templates carry classes from static/console/console.css, never style="".
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ProxyHeadersMiddleware:
    """First in MIDDLEWARE. With HUB_TRUSTED_PROXIES set, X-Forwarded-Proto and X-Forwarded-For
    from any other peer are dropped, so a client talking to the hub directly cannot claim to be on
    HTTPS (and get HSTS, secure-cookie behaviour) or to come from another address. The client
    address itself is worked out in one place: ``console.audit.client_ip``."""

    FORWARDED = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_FOR")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if audit.trusted_proxies() and not audit.is_trusted(request.META.get("REMOTE_ADDR")):
            for header in self.FORWARDED:
                request.META.pop(header, None)
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Content-Security-Policy on every response (Django 5.2 has no CSP of its own), and frame
    denial on those that bypass Django's middleware (static files)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            getattr(settings, "CONTENT_SECURITY_POLICY", CONTENT_SECURITY_POLICY),
        )
        # Static files are answered by WhiteNoise before Django's clickjacking middleware runs.
        if not getattr(response, "xframe_options_exempt", False):
            response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response
