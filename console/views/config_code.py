"""Config as code in the browser: a channel, or every listed channel, downloaded as YAML
(analysts and above: the file carries the samples); a file uploaded, its changes shown, then
applied on confirmation (admins). The work and the audit are console.config_code's, which the
REST API and the management commands call too."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods

from channels_app.models import Channel
from console import config_code
from console.access import requires
from console.roles import Role


@requires(Role.ANALYST)
@require_GET
def channels_export(request):
    text = config_code.exported(request, config_code.listed_channels(), via="page")
    return _download(text, "channels.yaml")


@requires(Role.ANALYST)
@require_GET
def channel_export(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    text = config_code.exported(request, [channel], via="page")
    return _download(text, f"{slugify(channel.name) or 'channel'}.yaml")


def _download(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@requires(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def channels_import(request):
    """Upload (or paste) -> the changes per channel, or why the file is refused -> apply."""
    context = {
        "publish": request.POST.get("publish") == "on",
        "max_bytes": config_code.MAX_IMPORT_BYTES,
    }
    if request.method == "GET":
        return render(request, "channels/import.html", context)
    text, error = _submitted_text(request)
    if error:
        return render(request, "channels/import.html", {**context, "error": error}, status=400)
    try:
        if request.POST.get("step") == "apply":
            applied = config_code.imported(request, text, publish=context["publish"], via="page")
            messages.success(request, _summary(applied))
            return redirect("channels")
        plans = config_code.preview(text)
    except config_code.Refused as exc:
        context |= {"problems": exc.problems, "text": text}
        return render(request, "channels/import.html", context, status=400)
    changed = sum(bool(p.changes) for p in plans)
    context |= {"plans": plans, "text": text, "changed": changed}
    return render(request, "channels/import.html", context)


def _submitted_text(request) -> tuple[str, str]:
    """The file's text (uploaded, else pasted or carried from the preview), or why not."""
    upload = request.FILES.get("file")
    if upload is not None:
        if upload.size > config_code.MAX_IMPORT_BYTES:
            return "", f"the file is larger than {config_code.MAX_IMPORT_BYTES:,} bytes"
        try:
            return upload.read().decode("utf-8"), ""
        except UnicodeDecodeError:
            return "", "the file is not UTF-8 text"
    text = request.POST.get("document", "")
    if not text.strip():
        return "", "choose a YAML file (or paste one)"
    return text, ""


def _summary(applied) -> str:
    parts = []
    for result in applied:
        if result.version:
            parts.append(f"“{result.channel.name}” (version {result.version.number})")
        elif result.plan.changes and result.plan.new:
            parts.append(f"“{result.channel.name}” (created, not published)")
        elif result.plan.changes:
            parts.append(f"“{result.channel.name}” (saved as its draft: review and publish it)")
    if not parts:
        return "Imported: nothing changed."
    return "Imported " + ", ".join(parts) + "."
