"""The public entry point: one parsed v2 message -> one FHIR R4 transaction Bundle."""

from __future__ import annotations

from adapters.codecs import hl7v2
from adapters.mapping import datatypes as dt
from adapters.mapping import registry
from adapters.mapping.context import Context, stable_uuid
from adapters.mapping.declared import fields
from adapters.mapping.result import ConversionResult, MappingError, UnsupportedMessageType
from adapters.mapping.validation import validate


def convert(
    message: hl7v2.Message,
    *,
    default_tz: str | None = None,
    check: bool = True,
    profile: str | None = None,
    timezone: str | None = None,
) -> ConversionResult:
    """Convert ``message`` with the built-in map for its type.

    ``default_tz`` ("+HH:MM") is the zone for times the sender gives without one when MSH-7
    has none either (default UTC); ``timezone`` (an IANA name, the channel's) overrides it with
    that zone's offset at the message's time. ``check=False`` skips validation (the test bench may want
    to show an invalid Bundle); the pipeline always validates. ``profile="us-core"`` adds what
    US Core asks beyond the IG (race and ethnicity extensions, see us_core.py).

    Raises UnsupportedMessageType for a type without a map, MappingError when the message
    lacks what the map requires or the Bundle would not be valid FHIR R4.
    """
    unsupported = unmapped(message)
    if unsupported:
        raise unsupported
    handler = registry.lookup(message.message_code, message.trigger_event)
    ctx = Context(message, default_tz=default_tz, profile=profile, timezone=timezone)
    try:
        handler(ctx)
    except MappingError:
        raise
    except Exception as exc:  # a bug in a map must still name where it happened
        seg = ctx.segment
        raise MappingError(
            f"internal map error: {type(exc).__name__}: {exc}",
            segment=seg.name if seg is not None else "",
            field=f"{seg.name}" if seg is not None else "",
            target="Bundle",
            origin="map",
        ) from exc
    bundle = _bundle(ctx)
    if check:
        validate(bundle)
    types = list(dict.fromkeys(e["resource"]["resourceType"] for e in ctx.entries))
    return ConversionResult(bundle, ctx.issues, types)


@fields(
    "MSH",
    "Bundle",
    (
        "MSH-7",
        "Bundle.timestamp",
        "DTM -> instant (zone from MSH-7, else the converter default)",
        "a valid date/time",
    ),
    ("MSH-10", "Bundle.identifier.value", "text; system from MSH-3, else MSH-4"),
)
def unmapped(message: hl7v2.Message) -> UnsupportedMessageType | None:
    """Why ``message`` has no built-in map (naming what is mapped), or None when it has one: a
    dictionary lookup, cheap enough for ingest to answer the sender with it."""
    code, event = message.message_code, message.trigger_event
    if registry.lookup(code, event) is not None:
        return None
    events = registry.supported_events(code)
    if events:  # the code is mapped, this event is not: say which events are
        return UnsupportedMessageType(
            message.message_type, supported=[f"{code.upper()}^{e}" for e in events]
        )
    return UnsupportedMessageType(message.message_type, supported=registry.supported_codes())


def _bundle(ctx: Context) -> dict:
    """MSH -> Bundle: MSH-10 -> identifier.value (system from MSH-3, else MSH-4), MSH-7 ->
    timestamp."""
    msh = ctx.message.msh
    bundle: dict = {"resourceType": "Bundle", "id": stable_uuid("Bundle", ctx.message_key)}
    control = ctx.message.control_id.strip()
    if control:
        identifier = {"value": control}
        system = dt.hd_system(ctx.comps(msh, 3)) or dt.hd_system(ctx.comps(msh, 4))
        if system:
            identifier = {"system": system, "value": control}
        bundle["identifier"] = identifier
    else:
        ctx.issue(
            msh,
            10,
            "",
            "Bundle.identifier",
            "MSH-10 (message control id) is empty; the Bundle has no identifier and its"
            " ids derive from the message text",
        )
    bundle["type"] = ctx.bundle_type
    # Bundle.timestamp is an instant (seconds and zone required): a coarser MSH-7 is padded
    # with zeros, a missing zone is the converter's default (see Context.default_tz).
    sent = ctx.dtm(msh, 7, "Bundle.timestamp")
    if sent:
        bundle["timestamp"] = ctx.instant_text(sent)
    elif not ctx.value(msh, 7) and not any(i.field == "MSH-7" for i in ctx.issues):
        ctx.issue(
            msh,
            7,
            "",
            "Bundle.timestamp",
            "MSH-7 (date/time of message) is empty; Bundle.timestamp is left out",
        )
    if ctx.bundle_type == "searchset":
        _as_search_results(bundle, ctx.entries)
    else:
        bundle["entry"] = ctx.entries
    return bundle


def _as_search_results(bundle: dict, entries: list[dict]) -> None:
    """A query's answer: the Patients are the matches, what they reference is included."""
    found = []
    for entry in entries:
        match = entry["resource"]["resourceType"] == "Patient"
        mode = "match" if match else "include"
        found.append(
            {"fullUrl": entry["fullUrl"], "resource": entry["resource"], "search": {"mode": mode}}
        )
    bundle["total"] = sum(e["search"]["mode"] == "match" for e in found)
    if found:
        bundle["entry"] = found
