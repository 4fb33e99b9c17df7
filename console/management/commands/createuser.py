"""Create a console user with a role, or change an existing user's role (and password).

    python manage.py createuser ana --role operator                   # prompts for the password
    HUB_PW=... python manage.py createuser ana --role operator --password-env HUB_PW
    python manage.py createuser ana --role operator --can-edit-resend  # grant edit-and-resend

The password is checked against AUTH_PASSWORD_VALIDATORS and never printed. Every run is
audited (user.created / user.updated: the role before and after, a password change, a grant).
"""

from __future__ import annotations

import argparse
import getpass
import os

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from console import audit
from console.roles import RESEND_EDITED, Role, grant, set_role, user_role


class Command(BaseCommand):
    help = "Create a console user with a role, or update an existing user's role."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--role", required=True, choices=[r.label for r in Role], help="the user's role"
        )
        parser.add_argument(
            "--password-env",
            metavar="VAR",
            help="read the password from this environment variable instead of prompting",
        )
        parser.add_argument(
            "--can-edit-resend",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="grant (or with --no-can-edit-resend take back) the edit-and-resend permission, "
            "which no role implies (operators and above; admins hold it anyway)",
        )

    def handle(
        self,
        *args,
        username: str,
        role: str,
        password_env: str | None,
        can_edit_resend: bool | None = None,
        **options,
    ):
        wanted = Role.parse(role)
        if can_edit_resend and wanted < RESEND_EDITED.role:
            raise CommandError(
                f"{RESEND_EDITED.label} needs the {RESEND_EDITED.role.label} role or above"
            )
        User = get_user_model()
        existing = User.objects.filter(username=username).first()
        password = self._password(password_env, prompt=existing is None)
        candidate = existing or User(username=username)
        if password is not None:
            try:
                validate_password(password, user=candidate)
            except ValidationError as exc:
                raise CommandError("password refused: " + " ".join(exc.messages)) from None
        with transaction.atomic():
            if existing is None:
                user = User.objects.create_user(username, password=password)
                set_role(user, wanted)
                granted = self._grant(user, can_edit_resend)
                _audit("user.created", user, role=[None, wanted.label], grant=can_edit_resend)
                self.stdout.write(f"created user {username!r} with role {wanted.label}{granted}")
                return
            before = user_role(existing)
            set_role(existing, wanted)
            if password is not None:
                existing.set_password(password)
                existing.save(update_fields=["password"])
            granted = self._grant(existing, can_edit_resend)
            _audit(
                "user.updated",
                existing,
                role=[before.label if before else None, wanted.label],
                password_changed=password is not None,
                grant=can_edit_resend,
            )
        was = before.label if before else "none"
        change = f"role {was} -> {wanted.label}" if before != wanted else f"role {wanted.label}"
        extra = ", password changed" if password is not None else ""
        self.stdout.write(f"updated user {username!r}: {change}{extra}{granted}")

    def _grant(self, user, wanted: bool | None) -> str:
        """Grant or take back edit-and-resend as asked; what to add to the report line."""
        if wanted is None:
            return ""
        grant(user, RESEND_EDITED, granted=wanted)
        return f", {'may' if wanted else 'may not'} {RESEND_EDITED.label}"

    def _password(self, variable: str | None, *, prompt: bool) -> str | None:
        """From the environment variable, else a prompt (new users only: existing keep theirs)."""
        if variable:
            value = os.environ.get(variable)
            if not value:
                raise CommandError(f"environment variable {variable} is not set or empty")
            return value
        if not prompt:
            return None
        try:
            first = getpass.getpass("Password: ")
            second = getpass.getpass("Password (again): ")
        except (EOFError, KeyboardInterrupt):
            raise CommandError("no password given") from None
        if first != second:
            raise CommandError("the passwords do not match")
        if not first:
            raise CommandError("the password is empty")
        return first


def _audit(action: str, user, *, grant: bool | None, **detail) -> None:
    if grant is not None:
        detail[RESEND_EDITED.codename] = "granted" if grant else "taken back"
    audit.record(
        None,
        action,
        target=f"user:{user.get_username()}",
        detail={"via": "shell", **detail},
        actor_name="shell:createuser",
    )
