"""The resources other maps point at: Practitioner (XCN), Organization (XON/HD), Location (PL).

They are conditional creates (``ifNoneExist``): the hub references them, it does not own them.
Within a message the same person or place is one entry, however often it is named.
"""

from __future__ import annotations

from adapters.mapping import datatypes as dt
from adapters.mapping.context import Context, ref
from adapters.mapping.datatypes import Comps

LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"


def practitioner(ctx: Context, xcn: Comps) -> dict | None:
    """XCN -> Reference(Practitioner). Identified by XCN-1 (+ XCN-9); name-only stays
    message-scoped so two different "Dr Smith"s are never merged across messages."""
    if not xcn:
        return None
    memo_key = ("XCN", xcn.source)
    if memo_key in ctx.memo:  # the same person named again in this message
        known = ctx.memo[memo_key]
        return dict(known) if known else None
    reference = _practitioner(ctx, xcn)
    ctx.memo[memo_key] = reference
    return dict(reference) if reference else None


def _practitioner(ctx: Context, xcn: Comps) -> dict | None:
    identifier = dt.xcn_identifier(xcn)
    name = dt.xcn_name(xcn)
    if identifier is None and name is None:
        return None
    resource: dict = {"resourceType": "Practitioner"}
    if identifier:
        resource["identifier"] = [identifier]
    if name:
        resource["name"] = [name]
    display = _display(name) if name else identifier["value"]
    key = None if identifier else "name:" + display
    full_url = ctx.add(resource, identity=identifier, key=key, update=False)
    return ref(full_url, display)


def practitioners(ctx: Context, seg, n: int) -> list[dict]:
    out = []
    for xcn in ctx.reps(seg, n):
        reference = practitioner(ctx, xcn)
        if reference:
            out.append(reference)
    return out


def organization(ctx: Context, xon: Comps) -> dict | None:
    """XON (name ^ type ^ id ^ ... ^ assigning authority 6 ^ id type 7 ^ ... ^ org id 10)."""
    if not xon:
        return None
    memo_key = ("XON", xon.source)
    if memo_key in ctx.memo:
        known = ctx.memo[memo_key]
        return dict(known) if known else None
    reference = _organization(ctx, xon)
    ctx.memo[memo_key] = reference
    return dict(reference) if reference else None


def _organization(ctx: Context, xon: Comps) -> dict | None:
    name = xon.c(1)
    value = xon.c(10) or xon.c(3)
    identifier = None
    if value:
        identifier = {}
        type_code = xon.c(7)
        if type_code:
            identifier["type"] = dt.identifier_type(type_code)
        system = dt.hd_system(xon.sub(6))
        if system:
            identifier["system"] = system
        identifier["value"] = value
    if not (name or identifier):
        return None
    resource: dict = {"resourceType": "Organization"}
    if identifier:
        resource["identifier"] = [identifier]
    if name:
        resource["name"] = name
    full_url = ctx.add(
        resource, identity=identifier, key=None if identifier else "org:" + name, update=False
    )
    return ref(full_url, name or None)


def organization_from_hd(ctx: Context, hd: Comps) -> dict | None:
    """HD (namespace ^ universal id ^ type), e.g. MSH-4 or a facility, -> Organization."""
    name, uid = hd.c(1), hd.c(2)
    if not (name or uid):
        return None
    resource: dict = {"resourceType": "Organization"}
    identifier = None
    system = dt.hd_system(hd)
    if uid or name:
        identifier = {"system": system, "value": uid or name} if system else None
    if identifier:
        resource["identifier"] = [identifier]
    if name:
        resource["name"] = name
    full_url = ctx.add(resource, identity=identifier, key="org:" + (name or uid), update=False)
    return ref(full_url, name or uid)


def location(ctx: Context, pl: Comps) -> dict | None:
    """PL (point of care ^ room ^ bed ^ facility ^ status ^ type ^ building ^ floor ^
    description) -> Reference(Location). Each level named is its own Location, partOf the
    level above (facility > building > floor > point of care > room > bed); the reference is
    to the point of care (the IG maps PL.1 to Encounter.location.location), else the first
    level below it. A level is keyed globally by its path, so a bed is one record."""
    if not pl:
        return None
    memo_key = ("PL", pl.source)
    if memo_key in ctx.memo:
        known = ctx.memo[memo_key]
        return dict(known) if known else None
    reference = _location(ctx, pl)
    ctx.memo[memo_key] = reference
    return dict(reference) if reference else None


# PL components from the widest level to the narrowest, with their physical type.
PL_LEVELS = ((4, "si"), (7, "bu"), (8, "lvl"), (1, "wa"), (2, "ro"), (3, "bd"))


def _location(ctx: Context, pl: Comps) -> dict | None:
    levels = [(pl.c(n), kind) for n, kind in PL_LEVELS if pl.c(n)]
    description = pl.c(9)
    if not levels and description:
        levels = [(description, "")]
    if not levels:
        return None
    parent, path, referenced = None, [], None
    for name, kind in levels:
        path.append(f"{kind}={name}")
        parent = _location_level(ctx, name, kind, "|".join(path), parent)
        if referenced is None or kind in ("wa",) or referenced[1] in ("si", "bu", "lvl"):
            referenced = (parent, kind, name)
    url, _, name = referenced
    if description and description != name:
        ctx.resource(url).setdefault("description", description)
    # The display says where the patient is to the bed ("4E 401 B"), as senders write it.
    where = " ".join(level for level, kind in levels if kind in ("wa", "ro", "bd"))
    return ref(url, where or name)


def _location_level(ctx: Context, name: str, kind: str, key: str, parent: str | None) -> str:
    resource: dict = {"resourceType": "Location", "status": "active", "mode": "instance"}
    resource["name"] = name
    if kind:
        resource["physicalType"] = {"coding": [{"system": LOCATION_PHYSICAL_TYPE, "code": kind}]}
    if parent:
        resource["partOf"] = ref(parent)
    # Keyed without the message: a bed is the same bed in every message.
    return ctx.add(resource, key="PL|" + key, global_key=True, update=False)


def _display(name: dict) -> str:
    parts = [*name.get("prefix", []), *name.get("given", [])]
    if name.get("family"):
        parts.append(name["family"])
    parts.extend(name.get("suffix", []))
    return " ".join(parts)
