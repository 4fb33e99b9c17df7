"""Roles, from least to most trusted. Each role includes every permission of the ones below it.

viewer    dashboards and message metadata, PHI masked
operator  + replay, pause/resume, view PHI (audited)
analyst   + edit channels, mappings, rules; test bench
admin     + users, roles, tokens, publish, settings

A user's role is the highest Django group they belong to (superusers are admins); the groups are
created by a data migration.

A few rights come with no role: an admin grants them to chosen users (a Django permission), and
admins hold them all. Each names the least role it may be used with:

edit and resend   an operator edits a message's body and sends it as a new message
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ANALYST = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; roles: {', '.join(r.label for r in cls)}")


def user_role(user) -> Role | None:
    """The highest role of ``user``, or None (anonymous, inactive, or in no role group)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    token_role = getattr(user, "_hub_token_role", None)
    if token_role is not None:  # signed in by an API token: the token's role, nothing more
        return token_role
    if user.is_superuser:
        return Role.ADMIN
    cached = getattr(user, "_hub_role", False)
    if cached is not False:
        return cached
    names = {name.upper() for name in user.groups.values_list("name", flat=True)}
    roles = [r for r in Role if r.name in names]
    user._hub_role = max(roles) if roles else None
    return user._hub_role


def has_role(user, role: Role) -> bool:
    current = user_role(user)
    return current is not None and current >= role


@dataclass(frozen=True, slots=True)
class Permission:
    """A right no role implies: granted to chosen users of at least ``role``; admins hold it."""

    codename: str  # Django's "app_label.codename"
    role: Role
    label: str

    @property
    def app_label(self) -> str:
        return self.codename.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.codename.split(".", 1)[1]


RESEND_EDITED = Permission("channels_app.resend_edited", Role.OPERATOR, "edit and resend")


def has_permission(user, permission: Permission) -> bool:
    """True for admins, and for users of at least the permission's role who were granted it."""
    role = user_role(user)
    if role is None or role < permission.role:
        return False
    return role >= Role.ADMIN or user.has_perm(permission.codename)


def grant(user, permission: Permission, granted: bool = True) -> None:
    """Give ``user`` the permission (or take it back)."""
    from django.contrib.auth.models import Permission as DjangoPermission

    row = DjangoPermission.objects.get(
        content_type__app_label=permission.app_label, codename=permission.name
    )
    (user.user_permissions.add if granted else user.user_permissions.remove)(row)
    for cache in ("_perm_cache", "_user_perm_cache"):  # ModelBackend caches on the user object
        user.__dict__.pop(cache, None)


def set_role(user, role: Role) -> None:
    from django.contrib.auth.models import Group

    user.groups.remove(*Group.objects.filter(name__in=[r.label for r in Role]))
    user.groups.add(Group.objects.get_or_create(name=role.label)[0])
    user._hub_role = role
