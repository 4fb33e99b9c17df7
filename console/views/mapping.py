"""The Mapping page of a channel: the built-in map of each message type as a table (declared by
the maps themselves, adapters.mapping.declared) and the analyst field rules applied after it.

Everyone reads; analysts edit the rules in the browser (static/console/mapping.js), preview them
on a sample with the dry run, and save them through console.channel_actions (audited with the
diff, as every channel change). Lookup tables travel as ``code,value`` text, parsed here only.
"""

from __future__ import annotations

import json

from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from adapters.codecs import hl7v2
from adapters.mapping import declared, registry
from channels_app import drafts, field_rules
from channels_app.dry_run import dry_run
from channels_app.models import Channel, Message
from console import channel_actions
from console.access import requires
from console.roles import Role, has_role

RECEIVED_TYPES_SHOWN = 20


@requires(Role.VIEWER)
def mapping_page(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    may_edit = has_role(request.user, Role.ANALYST)
    samples = _samples(channel) if may_edit else []
    received = _received_types(channel, samples)
    chosen = request.GET.get("type", "").strip().upper() or (received[0] if received else "")
    # Analysts edit the draft (what runs changes when it is published); the live rules show
    # when there is none.
    mapping = field_rules.stored(drafts.draft_channel(channel).mapping)
    context = {
        "drafted": drafts.has_draft(channel),
        "channel": channel,
        "may_edit": may_edit,
        "received": received,
        "registered": [t for t in registry.supported() if "^" in t and t not in received],
        "chosen": chosen,
        "table": declared.table(chosen) if chosen else None,
        "mapping": mapping,
        "editor": {
            "rules": mapping["rules"],
            "tables": {name: _csv(rows) for name, rows in mapping["tables"].items()},
            "samples": [{"id": s.pk, "name": s.name, "raw": s.raw} for s in samples],
        },
    }
    return render(request, "mapping/page.html", context)


@requires(Role.ANALYST)
@require_POST
def mapping_save(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    try:
        mapping = _posted_mapping(request)
    except field_rules.MappingRefused as exc:
        return JsonResponse(exc.as_dict(), status=400)
    try:
        draft = channel_actions.save_draft(
            request, channel, {**drafts.draft_of(channel), "mapping": mapping}
        )
    except drafts.DraftError as exc:
        return JsonResponse({"detail": str(exc), "part": "mapping"}, status=400)
    return JsonResponse(
        {
            "saved": True,
            "draft": True,
            "changed": bool(draft.changes),
            "rules": len(mapping["rules"]),
            "publish_url": reverse("channel-publish", args=[channel.pk]),
        }
    )


@requires(Role.ANALYST)
@require_POST
def mapping_preview(request, pk: int):
    """The dry run of the posted message with the posted (unsaved) rules."""
    channel = get_object_or_404(Channel, pk=pk)
    try:
        mapping = _posted_mapping(request)
    except field_rules.MappingRefused as exc:
        return JsonResponse(exc.as_dict(), status=400)
    raw = str(_body(request).get("raw") or "").replace("\r\n", "\r").replace("\n", "\r")
    if not raw.strip():
        return JsonResponse(
            {"detail": "choose a sample or paste a message", "part": "raw"}, status=400
        )
    result = dry_run(channel, raw, mapping=mapping)
    tree = render_to_string("bench/_tree.html", {"tree": result.parse_tree or []})
    return JsonResponse(
        {
            "tree_html": tree,
            "bundle": result.bundle,
            "issues": result.issues,
            "error": result.error,
        }
    )


def _body(request) -> dict:
    if not hasattr(request, "_mapping_body"):
        try:
            request._mapping_body = json.loads(request.body or b"{}")
        except ValueError:
            request._mapping_body = {}
    return request._mapping_body if isinstance(request._mapping_body, dict) else {}


def _posted_mapping(request) -> dict:
    """The editor's rules, and its tables as ``code,value`` text; checked (MappingRefused)."""
    body = _body(request)
    tables = {}
    texts = body.get("tables") or {}
    if not isinstance(texts, dict):
        raise field_rules.MappingRefused("tables: expected name -> code,value text", part="tables")
    for name, text in texts.items():
        name = str(name).strip()
        try:
            tables[name] = field_rules.table_from_csv(str(text))
        except field_rules.BadTable as exc:
            raise field_rules.MappingRefused(
                f"table {name!r}: {exc}", part=f"tables.{name}"
            ) from None
    return field_rules.checked_mapping({"rules": body.get("rules") or [], "tables": tables})


def _csv(rows: dict[str, str]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows.items())
    return out.getvalue()


def _samples(channel: Channel) -> list:
    return [s for s in channel.samples.order_by("name") if s.raw.startswith("MSH")]


def _received_types(channel: Channel, samples: list) -> list[str]:
    """The types the channel's messages and samples carry (``CODE^EVENT``), most recent first."""
    found = (
        Message.objects.filter(channel=channel)
        .exclude(message_type="")
        .order_by("-id")
        .values_list("message_type", flat=True)[:500]
    )
    types = [_code_event(t) for t in found]
    for sample in samples:
        try:
            types.append(_code_event(hl7v2.parse(sample.raw).message_type))
        except hl7v2.HL7Error:
            continue
    return list(dict.fromkeys(t for t in types if t))[:RECEIVED_TYPES_SHOWN]


def _code_event(message_type: str) -> str:
    return "^".join(message_type.upper().split("^")[:2])
