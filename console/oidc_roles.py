"""Claims to roles for single sign-on: pure functions, importable from settings (console/oidc.py)."""

from __future__ import annotations

from console.roles import Role


def parse_role_map(text: str) -> dict[str, Role]:
    """``"hub-admins:admin, hub-ops:operator"`` -> {"hub-admins": ADMIN, "hub-ops": OPERATOR}."""
    mapping: dict[str, Role] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        group, sep, role = item.rpartition(":")
        if not sep or not group.strip():
            raise ValueError(f"{item.strip()!r} is not group:role")
        mapping[_group_name(group)] = Role.parse(role)
    return mapping


def role_from_claims(claims: dict, claim: str, role_map: dict[str, Role]) -> Role | None:
    """The highest role the user's groups map to, or None."""
    value = claims.get(claim) or []
    groups = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    roles = [role_map[g] for g in map(_group_name, map(str, groups)) if g in role_map]
    return max(roles) if roles else None


def _group_name(name: str) -> str:
    # Keycloak sends group paths ("/hub-admins"); either spelling maps.
    return name.strip().lstrip("/")
