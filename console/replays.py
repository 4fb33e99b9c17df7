"""Replay and edit-and-resend as people ask for them, from a page or the REST API alike: the
pipeline (channels_app.pipeline.replay) does the work, this writes the audit entry, with ids and
counts, never a message body. ``via`` names the API in the entry; the pages leave it out."""

from __future__ import annotations

from channels_app.models import Message, ReplayJob
from channels_app.pipeline import replay
from console import audit


def replay_message(request, message_id: int, mode: str, *, via: str = "") -> dict:
    """Replay one message; its counts (replayed, skipped by reason) as audited."""
    counts = replay.replay([message_id], mode).counts()
    detail = _via({"mode": mode, **counts}, via)
    audit.record(request, "message.replayed", target=f"message:{message_id}", detail=detail)
    return counts


def replay_selection(
    request,
    message_ids: list[int],
    mode: str,
    selection: dict,
    *,
    destinations: list[int] = (),
    rate: float | None = None,
    via: str = "",
) -> ReplayJob:
    """Replay many messages as a job (raises replay.SelectionTooLarge); ``selection`` says how
    they were chosen (the filter, or the ids) and goes on the job and the audit entry."""
    job = replay.start_job(
        message_ids,
        mode,
        selection=selection,
        user=request.user,
        destinations=destinations,
        rate=rate,
    )
    detail = {"mode": mode, **selection, "selected": job.total}
    if destinations:
        detail["destinations"] = sorted(destinations)
    if rate is not None:
        detail["rate"] = rate
    audit.record(
        request, "messages.replayed", target=f"replay-job:{job.pk}", detail=_via(detail, via)
    )
    return job


STEERING = {"pause": replay.pause, "resume": replay.resume, "cancel": replay.cancel}


def steer(request, job_id: int, action: str, *, via: str = "") -> ReplayJob:
    """Pause, resume or cancel a job (raises replay.NotNow, ReplayJob.DoesNotExist); audited
    with the progress it had."""
    job = STEERING[action](job_id)
    detail = {"state": job.state, "done": job.done, "total": job.total}
    audit.record(
        request, f"replay-job.{job.state}", target=f"replay-job:{job.pk}", detail=_via(detail, via)
    )
    return job


def resend(request, message_id: int, raw: str, *, via: str = "") -> Message:
    """Store an edit as a new message and send it (raises replay.ResendRefused)."""
    copy = replay.edit_and_resend(
        message_id, raw, request.user, remote_addr=audit.client_ip(request) or ""
    )
    detail = {"original": message_id, "new": copy.pk}
    audit.record(
        request, "message.resent", target=f"message:{message_id}", detail=_via(detail, via)
    )
    return copy


def _via(detail: dict, via: str) -> dict:
    return {**detail, "via": via} if via else detail
