"""Issue, rotate or revoke an API token for a service account.

    python manage.py issue_token lab-feed --role operator --expires 90d    # prints the token once
    python manage.py issue_token lab-feed --rotate --overlap 24h           # new token, old one
                                                                            # works 24 h more
    python manage.py issue_token lab-feed --revoke                         # every token it has

The account is created if new; it cannot sign in to the console with a password.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from console import audit, tokens
from console.models import ApiToken
from console.roles import Role


class Command(BaseCommand):
    help = "Issue (or rotate, or revoke) an API token for a service account."

    def add_arguments(self, parser):
        parser.add_argument("account")
        parser.add_argument("--role", choices=[r.label for r in Role], help="the token's role")
        parser.add_argument(
            "--expires", default="90d", help="lifetime, e.g. 90d, 12h (default 90d)"
        )
        parser.add_argument("--name", default="", help="a label, e.g. what uses the token")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--rotate", action="store_true", help="replace the newest valid token")
        action.add_argument("--revoke", action="store_true", help="revoke every token of ACCOUNT")
        parser.add_argument(
            "--overlap", default="24h", help="with --rotate: how long the old token keeps working"
        )

    def handle(self, *args, account, role, expires, name, rotate, revoke, overlap, **options):
        try:
            if revoke:
                return self._revoke(account)
            if rotate:
                return self._rotate(account, tokens.parse_duration(overlap))
            if role is None:
                raise CommandError("--role is required to issue a token")
            lifetime = tokens.parse_duration(expires)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        user = get_user_model().objects.filter(username=account).first()
        if user is not None and user.has_usable_password():
            raise CommandError(
                f"{account!r} is a person's account; tokens are for service accounts"
            )
        with transaction.atomic():
            issued = tokens.issue(
                tokens.service_account(account), Role.parse(role), lifetime=lifetime, name=name
            )
            _audit("token.issued", issued.token)
        self._print(issued)

    def _rotate(self, account: str, overlap):
        old = (
            ApiToken.objects.filter(account__username=account, revoked_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        if old is None or not tokens.is_usable(old):
            raise CommandError(f"{account!r} has no valid token to rotate; issue one with --role")
        with transaction.atomic():
            issued = tokens.rotate(old, overlap=overlap)
            _audit("token.rotated", issued.token, replaces=old.prefix)
        old.refresh_from_db()
        self._print(issued)
        self.stderr.write(
            f"the old token {old.prefix} stops working at {old.expires_at:%Y-%m-%d %H:%M} UTC"
        )

    def _revoke(self, account: str):
        live = list(ApiToken.objects.filter(account__username=account, revoked_at__isnull=True))
        with transaction.atomic():
            for token in live:
                tokens.revoke(token)
                _audit("token.revoked", token)
        self.stdout.write(f"revoked {len(live)} token(s) of {account!r}")

    def _print(self, issued: tokens.Issued):
        token = issued.token
        self.stderr.write(
            f"token {token.prefix} for {token.account.username!r}, role {token.role}, "
            f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC. It is shown once; store it now:"
        )
        self.stdout.write(issued.secret)


def _audit(action: str, token: ApiToken, **detail) -> None:
    audit.record(
        None,
        action,
        target=f"token:{token.prefix}",
        detail={"account": token.account.username, "role": token.role, "via": "shell", **detail},
    )
