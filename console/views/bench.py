"""The test bench of a channel: try a message without storing or sending it, keep samples with
their accepted output, and run them all as the channel's regression suite.

The work is channels_app's (dry_run, samples) and the audited actions console.bench's, the same
functions the REST API calls. Every POST answers an htmx fragment (the result, or the samples
list); without htmx it goes back to the page.
"""

from __future__ import annotations

import json

from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from adapters.codecs import exact_json
from channels_app import drafts
from channels_app import samples as suite
from channels_app.dry_run import CONTENT_TYPES, DryRun, dry_run
from channels_app.models import Channel, ChannelSample, Message
from console import bench
from console.access import requires
from console.roles import Role

MAX_UPLOAD_BYTES = 1024 * 1024


@requires(Role.ANALYST)
def bench_page(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    context = {"channel": channel, "content_types": CONTENT_TYPES, **_samples(channel)}
    return render(request, "bench/page.html", context)


@requires(Role.ANALYST)
@require_POST
def bench_run(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    raw, problem = _posted_raw(request)
    if problem:
        return _result(request, channel, None, problem=problem)
    return _result(request, channel, dry_run(channel, raw, _content_type(request)))


@requires(Role.ANALYST)
@require_POST
def bench_sample_new(request, pk: int):
    channel = get_object_or_404(Channel, pk=pk)
    raw, problem = _posted_raw(request)
    if not problem:
        try:
            bench.save_sample(
                request, channel, request.POST.get("name", ""), raw, _content_type(request)
            )
        except bench.SampleRefused as exc:
            problem = str(exc)
    return _samples_answer(request, channel, problem=problem)


@requires(Role.ANALYST)
@require_POST
def bench_sample_copy(request, pk: int):
    """A stored message's body as a sample: a PHI view, audited (console.bench.copy_message)."""
    channel = get_object_or_404(Channel, pk=pk)
    problem = ""
    message_id = request.POST.get("message", "").strip()
    try:
        bench.copy_message(request, channel, int(message_id), request.POST.get("name", ""))
    except bench.SampleRefused as exc:  # a ValueError too: caught before the one below
        problem = str(exc)
    except (ValueError, Message.DoesNotExist):
        problem = f"message: no stored message {message_id!r}"
    return _samples_answer(request, channel, problem=problem)


@requires(Role.ANALYST)
@require_POST
def bench_sample_run(request, pk: int):
    sample = get_object_or_404(ChannelSample.objects.select_related("channel"), pk=pk)
    return _result(request, sample.channel, suite.run_sample(sample), sample=sample)


@requires(Role.ANALYST)
@require_POST
def bench_sample_accept(request, pk: int):
    sample = get_object_or_404(ChannelSample.objects.select_related("channel"), pk=pk)
    bench.accept(request, sample)
    return _samples_answer(request, sample.channel)


@requires(Role.ANALYST)
@require_POST
def bench_sample_delete(request, pk: int):
    sample = get_object_or_404(ChannelSample.objects.select_related("channel"), pk=pk)
    channel = sample.channel
    bench.delete_sample(request, sample)
    return _samples_answer(request, channel)


@requires(Role.ANALYST)
@require_POST
def bench_suite(request, pk: int):
    """Run all, as the channel runs now or (``against=draft``) as its draft would."""
    channel = get_object_or_404(Channel, pk=pk)
    on_draft = request.POST.get("against") == "draft" and drafts.has_draft(channel)
    setup = drafts.drafted(channel) if on_draft else None
    outcomes = {o.sample.pk: o for o in suite.run_suite(channel, setup)}
    return _samples_answer(request, channel, outcomes=outcomes, on_draft=on_draft)


def _posted_raw(request) -> tuple[str, str]:
    """The message pasted, or the file uploaded; and what is wrong with it, if anything."""
    upload = request.FILES.get("file")
    if upload is not None:
        if upload.size > MAX_UPLOAD_BYTES:
            return "", f"file: larger than {MAX_UPLOAD_BYTES // 1024} KiB"
        return upload.read().decode("utf-8", errors="replace"), ""
    raw = request.POST.get("raw", "")
    if not raw.strip():
        return "", "raw: paste a message or choose a file"
    return raw.replace("\r\n", "\r").replace("\n", "\r") if raw.startswith("MSH") else raw, ""


def _content_type(request) -> str:
    chosen = request.POST.get("content_type", "")
    return chosen if chosen in CONTENT_TYPES else ""


def _result(request, channel, result: DryRun | None, *, problem: str = "", sample=None):
    if not request.htmx:
        return redirect("bench", channel.pk)
    context = {"channel": channel, "problem": problem, "sample": sample}
    if result is not None:
        context |= {"r": result, "bundle_text": _pretty(result.bundle), "outputs": _shown(result)}
    return render(request, "bench/_result.html", context)


def _samples_answer(request, channel, *, problem: str = "", outcomes=None, on_draft=False):
    if not request.htmx:
        return redirect("bench", channel.pk)
    context = {"channel": channel, "problem": problem, **_samples(channel, outcomes)}
    return render(request, "bench/_samples.html", context | {"on_draft": on_draft})


def _samples(channel: Channel, outcomes: dict | None = None) -> dict:
    """The samples' rows, their tally, and what Run all can run against (the draft, if any)."""
    rows = []
    for sample in channel.samples.select_related("created_by").order_by("name"):
        outcome = (outcomes or {}).get(sample.pk)
        rows.append({"sample": sample, "outcome": outcome, "diff": _diff_lines(outcome)})
    counts = suite.tally(list(outcomes.values())) if outcomes else None
    return {"samples": rows, "counts": counts, "drafted": drafts.has_draft(channel)}


def _diff_lines(outcome) -> list[tuple[str, str]]:
    return diff_lines(outcome.diff if outcome is not None else "")


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """Each line of a unified diff with its kind (add, del, hunk, same) for the colours."""
    kinds = {"+": "add", "-": "del", "@": "hunk"}
    return [(kinds.get(line[:1], "same"), line) for line in (diff or "").splitlines()]


def _shown(result: DryRun) -> list[dict]:
    shown = []
    for name, output in result.outputs.items():
        body = output.get("body")
        text = body if body is None else _pretty_text(body)
        shown.append({"name": name, **output, "shown": text})
    return shown


def _pretty(value) -> str:
    return "" if value is None else exact_json.dumps(value, indent=2, ensure_ascii=False)


def _pretty_text(body: str) -> str:
    try:
        return _pretty(json.loads(body))
    except ValueError:
        return body.replace("\r", "\n")
