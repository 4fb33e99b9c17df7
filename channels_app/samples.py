"""A channel's regression suite: its samples run through the dry run and compared with the output
each one had accepted. Shared by the bench page and the REST API.

A sample ``passed`` when its result is the accepted one, ``changed`` when it differs, ``failed``
when the message no longer gets through (an error) where it used to, and is ``unaccepted`` until
an analyst accepts an output. The suite runs as the channel runs now, or as its draft would
(``setup``: the unsaved channel and destinations of ``drafts.drafted``), so a change can be seen
against the accepted outputs before it is published. The diff is a unified diff of both results written out readably
(JSON pretty-printed, HL7 v2 one segment a line).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from adapters.codecs import exact_json
from channels_app.dry_run import CONTENT_TYPES, DryRun, dry_run
from channels_app.models import Channel, ChannelSample, Destination

PASSED, CHANGED, FAILED, UNACCEPTED = "passed", "changed", "failed", "unaccepted"
# The channel (maybe an unsaved draft's copy) and its destinations to run samples as.
Setup = tuple[Channel, list[Destination]]


class SampleRefused(ValueError):
    """A sample that cannot be saved; the message says which field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def checked_fields(name: str, raw: str, content_type: str = "") -> dict:
    """A sample's own fields checked (the bench's form, the API and YAML imports); SampleRefused
    names the field."""
    name, raw = (name or "").strip(), raw or ""
    if not name:
        raise SampleRefused("name", "a sample needs a name")
    if len(name) > 100:
        raise SampleRefused("name", "at most 100 characters")
    if not raw.strip():
        raise SampleRefused("raw", "the message is empty")
    if "\x00" in raw:
        raise SampleRefused("raw", "holds NUL characters, which cannot be stored")
    if content_type and content_type not in CONTENT_TYPES:
        raise SampleRefused("content_type", f"one of {', '.join(CONTENT_TYPES)} or blank")
    return {"name": name, "raw": raw, "content_type": content_type}


@dataclass
class SampleOutcome:
    sample: ChannelSample
    status: str
    diff: str
    result: DryRun
    changed: list[str] = field(default_factory=list)  # the places that differ (changed_places)

    def as_dict(self) -> dict:
        return {
            "sample": self.sample.pk,
            "name": self.sample.name,
            "status": self.status,
            "diff": self.diff,
            "changed": self.changed,
        }


def run_sample(sample: ChannelSample, setup: Setup | None = None) -> DryRun:
    channel, destinations = setup or (sample.channel, None)
    return dry_run(channel, sample.raw, sample.content_type, destinations=destinations)


def check_sample(sample: ChannelSample, setup: Setup | None = None) -> SampleOutcome:
    result = run_sample(sample, setup)
    current, accepted = result.comparable(), sample.accepted
    if accepted is None:
        return SampleOutcome(sample, UNACCEPTED, "", result)
    if current == accepted:
        return SampleOutcome(sample, PASSED, "", result)
    status = FAILED if result.error and not accepted.get("error") else CHANGED
    labels = ("accepted", "draft" if setup else "now")
    shown = diff(accepted, current, labels)
    return SampleOutcome(sample, status, shown, result, changed_places(accepted, current))


def run_suite(channel: Channel, setup: Setup | None = None) -> list[SampleOutcome]:
    found = channel.samples.select_related("channel").order_by("name")
    return [check_sample(sample, setup) for sample in found]


def tally(outcomes: list[SampleOutcome]) -> dict[str, int]:
    counts = dict.fromkeys((PASSED, CHANGED, FAILED, UNACCEPTED), 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


@transaction.atomic
def accept(sample: ChannelSample) -> DryRun:
    """Keep the sample's current result as its accepted output."""
    result = run_sample(sample)
    sample.accepted = result.comparable()
    sample.accepted_at = timezone.now()
    sample.save(update_fields=["accepted_sealed", "accepted_at"])
    return result


def diff(accepted: dict, current: dict, labels: tuple[str, str] = ("accepted", "now")) -> str:
    accepted, current = _sent_or_not(accepted, current)
    lines = difflib.unified_diff(readable(accepted), readable(current), *labels, n=3, lineterm="")
    return "\n".join(lines)


def changed_places(before: dict, after: dict, limit: int = 12) -> list[str]:
    """Where two results differ, as paths a reader knows (``Patient.identifier[0].system``: a
    path restarts at each resource), at most ``limit`` of them and then how many more."""
    found: list[str] = []
    _differences(before, after, "", found)
    places = list(dict.fromkeys(found))
    if len(places) > limit:
        places = [*places[:limit], f"and {len(places) - limit} more"]
    return places


def _differences(a, b, path: str, found: list[str]) -> None:
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        kind = a.get("resourceType")
        path = kind if kind and kind == b.get("resourceType") else path
        for key in sorted(a.keys() | b.keys()):
            _differences(a.get(key), b.get(key), f"{path}.{key}" if path else key, found)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            left = a[i] if i < len(a) else None
            right = b[i] if i < len(b) else None
            _differences(left, right, f"{path}[{i}]", found)
    else:
        found.append(path)


def _sent_or_not(accepted: dict, current: dict) -> tuple[dict, dict]:
    """An output only one side has is shown as one line each side ("not sent" against what was
    sent), not as its whole body: routing that flips reads as one change."""
    before, after = accepted.get("outputs") or {}, current.get("outputs") or {}
    only = set(before) ^ set(after)
    if not only:
        return accepted, current

    def folded(outputs: dict) -> dict:
        shown = {n: o for n, o in outputs.items() if n not in only}
        shown |= {n: _sent(outputs[n]) if n in outputs else "not sent" for n in only}
        return shown

    return {**accepted, "outputs": folded(before)}, {**current, "outputs": folded(after)}


def _sent(output: dict) -> str:
    if "error" in output:
        return f"not encoded: {output['error']}"
    size = len(output.get("body") or "")
    return f"sent: {output.get('content_type')} to {output.get('target')} ({size} characters)"


def readable(result: dict) -> list[str]:
    """The result as lines a person can compare: output bodies unfolded (JSON parsed, HL7 v2 split
    into its segments) so a changed field shows as one changed line."""
    shown = dict(result)
    shown["outputs"] = {
        name: {**output, "body": _unfolded(output.get("body"))}
        if isinstance(output, dict)
        else output  # a folded "not sent" line
        for name, output in (result.get("outputs") or {}).items()
    }
    return exact_json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _unfolded(body):
    if not isinstance(body, str):
        return body
    try:
        return json.loads(body)
    except ValueError:
        return [segment for segment in body.replace("\n", "\r").split("\r") if segment]
