"""Roles, from least to most trusted. Each role includes every permission of the ones below it.

viewer    dashboards and message metadata, PHI masked
operator  + replay, pause/resume, view PHI (audited)
analyst   + edit channels, mappings, rules; test bench
admin     + users, roles, tokens, publish, settings

A user's role is the highest Django group they belong to (superusers are admins); the groups are
created by a data migration.
"""

from __future__ import annotations

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


def set_role(user, role: Role) -> None:
    from django.contrib.auth.models import Group

    user.groups.remove(*Group.objects.filter(name__in=[r.label for r in Role]))
    user.groups.add(Group.objects.get_or_create(name=role.label)[0])
    user._hub_role = role
