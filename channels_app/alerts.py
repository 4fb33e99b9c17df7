"""Alerts: rules measured against the statistics and the queue by beat, every 15 s.

A rule that starts firing opens one alert and notifies once; while it keeps firing nothing more
happens (acknowledged or not); when it stops, the alert resolves and notifies once more. Every
move is a conditional write (a unique constraint allows one unresolved alert per rule, and a
resolve updates only a row still unresolved), so two beats at once cannot double a notice.
Notices go by email (Django's mail backend) and by webhook (JSON, signed with the rule's secret);
one that fails is retried with backoff a few times, its delivery state kept (``AlertNotice``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from channels_app import events, histogram, sealing, stats
from channels_app.models import Alert, AlertNotice, AlertRule, Channel, Destination
from channels_app.sources.status import SourceState, source_states

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
OPENED, RESOLVED = "opened", "resolved"


@dataclass(frozen=True, slots=True)
class Reading:
    firing: bool
    value: float | None
    detail: str


@dataclass(slots=True)
class Context:
    """What every rule of one evaluation reads: read once, whatever the number of rules."""

    now: datetime
    by_minute: dict[int, stats.Minute]
    queue: stats.QueueState
    breakers: dict[int, str]
    channel_of: dict[int, int]
    listeners: dict[int, SourceState]  # enabled MLLP/file channels; empty when no rule asks


def evaluate(now: datetime | None = None) -> list[tuple[Alert, str]]:
    """Measure every enabled rule; open and resolve alerts; returns the notices sent."""
    rules = list(AlertRule.objects.filter(enabled=True))
    if not rules:
        return []
    context = _context(
        now or datetime.now(UTC),
        max(r.window_min for r in rules),
        listeners=any(r.kind == AlertRule.Kind.LISTENER_DOWN for r in rules),
    )
    notices = []
    for rule in rules:
        reading = measure(rule, context)
        notice = _move(rule, reading)
        if notice is not None:
            notices.append(notice)
    for alert, event in notices:
        notify(alert, event)
    return notices


def _context(now: datetime, longest_window_min: int, listeners: bool = True) -> Context:
    destinations = Destination.objects.values_list("id", "channel_id", "breaker_state")
    return Context(
        listeners=_listener_states() if listeners else {},
        now=now,
        by_minute=stats.minutes(now - timedelta(minutes=longest_window_min)),
        queue=stats.queue_state(),
        breakers={d: state for d, _, state in destinations},
        channel_of={d: c for d, c, _ in destinations},
    )


def _listener_states() -> dict[int, SourceState]:
    listened = Channel.objects.filter(
        enabled=True, source_type__in=(Channel.SourceType.MLLP, Channel.SourceType.FILE)
    ).only("id", "name", "enabled", "source_type", "source_config")
    return source_states(listened)


# --- measuring


def measure(rule: AlertRule, context: Context) -> Reading:
    measure_kind = MEASURES[rule.kind]
    return measure_kind(rule, context)


def _in_scope(rule: AlertRule):
    def keep(scope: stats.Scope) -> bool:
        channel, destination = scope
        if rule.destination_id:
            return destination == rule.destination_id
        return not rule.channel_id or channel == rule.channel_id

    return keep


def _window(rule: AlertRule, context: Context) -> stats.Cell:
    first = stats.minute_of(context.now) - (rule.window_min - 1) * 60
    minutes = [m for minute, m in context.by_minute.items() if minute >= first]
    return stats.combined(minutes, _in_scope(rule))


def _errors(rule, context) -> Reading:
    errors = sum(stats.errors_by_stage(_window(rule, context)).values())
    return Reading(errors >= rule.threshold, errors, f"{errors} error(s) in {rule.window_min} min")


def _error_rate(rule, context) -> Reading:
    cell = _window(rule, context)
    errors = sum(stats.errors_by_stage(cell).values())
    handled = cell.counts[stats.PROCESSED] + cell.counts[stats.FILTERED] + errors
    rate = errors / handled if handled else 0.0
    return Reading(
        handled > 0 and rate >= rule.threshold,
        round(rate, 4),
        f"error rate {rate:.1%} over {handled} message(s) in {rule.window_min} min",
    )


def _p95(rule, context) -> Reading:
    p95 = histogram.percentile(_window(rule, context).histograms.get(stats.TOTAL, {}), 0.95)
    ms = None if p95 is None else round(p95 * 1000, 1)
    return Reading(
        ms is not None and ms > rule.threshold,
        ms,
        f"p95 {ms} ms in {rule.window_min} min" if ms is not None else "no delivery in the window",
    )


def _destinations_in_scope(rule: AlertRule, context: Context) -> list[int]:
    if rule.destination_id:
        return [rule.destination_id]
    return [d for d, c in context.channel_of.items() if not rule.channel_id or c == rule.channel_id]


def _queue_depth(rule, context) -> Reading:
    depth = sum(context.queue.open_by_destination(d) for d in _destinations_in_scope(rule, context))
    return Reading(depth >= rule.threshold, depth, f"{depth} open deliveries")


def _oldest_age(rule, context) -> Reading:
    ages = [context.queue.oldest.get(d, 0.0) for d in _destinations_in_scope(rule, context)]
    oldest = round(max(ages, default=0.0), 1)
    return Reading(oldest > rule.threshold, oldest, f"oldest open delivery waits {oldest} s")


def _inactivity(rule, context) -> Reading:
    if not _active_hours(rule, context.now):
        return Reading(False, None, "outside the rule's active hours")
    cell = _window(rule, context)
    name = stats.TYPE_PREFIX + rule.message_type if rule.message_type else stats.RECEIVED
    seen = cell.counts[name]
    what = rule.message_type or "message"
    return Reading(seen == 0, seen, f"{seen} {what} received in {rule.window_min} min")


def _active_hours(rule: AlertRule, now: datetime) -> bool:
    if rule.active_from is None or rule.active_until is None:
        return True
    local = timezone.localtime(now).time()
    if rule.active_from <= rule.active_until:
        return rule.active_from <= local < rule.active_until
    return local >= rule.active_from or local < rule.active_until  # across midnight


def _breaker_open(rule, context) -> Reading:
    tripped = [
        d
        for d in _destinations_in_scope(rule, context)
        if context.breakers.get(d, "closed") != "closed"
    ]
    return Reading(bool(tripped), len(tripped), f"{len(tripped)} breaker(s) open or half-open")


LISTENER_DOWN_STATES = ("error", "not running")


def _listener_down(rule, context) -> Reading:
    channel_id = rule.channel_id or context.channel_of.get(rule.destination_id)
    down = {
        pk: state
        for pk, state in context.listeners.items()
        if state.state in LISTENER_DOWN_STATES and (not channel_id or pk == channel_id)
    }
    if not down:
        return Reading(False, 0, "listening")
    words = [
        f"{s.description}: {s.state}{f' ({s.error})' if s.error else ''}" for s in down.values()
    ]
    return Reading(True, len(down), f"{len(down)} listener(s) down: " + "; ".join(words))


MEASURES = {
    AlertRule.Kind.ERRORS: _errors,
    AlertRule.Kind.ERROR_RATE: _error_rate,
    AlertRule.Kind.P95: _p95,
    AlertRule.Kind.QUEUE_DEPTH: _queue_depth,
    AlertRule.Kind.OLDEST_AGE: _oldest_age,
    AlertRule.Kind.INACTIVITY: _inactivity,
    AlertRule.Kind.BREAKER_OPEN: _breaker_open,
    AlertRule.Kind.LISTENER_DOWN: _listener_down,
}


# --- moving alerts

UNRESOLVED = (Alert.State.OPEN, Alert.State.ACKNOWLEDGED)


def _move(rule: AlertRule, reading: Reading) -> tuple[Alert, str] | None:
    current = Alert.objects.filter(rule=rule, state__in=UNRESOLVED).first()
    if reading.firing and current is None:
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    rule=rule, value=reading.value, detail=reading.detail[:1000]
                )
        except IntegrityError:  # another evaluation opened it first: its notice, not ours
            return None
        return alert, OPENED
    if not reading.firing and current is not None:
        return resolve(current, reading.detail)
    return None


def resolve(alert: Alert, detail: str = "") -> tuple[Alert, str] | None:
    """Resolve an unresolved alert (by evaluation, or by hand); None if it was resolved already."""
    now = timezone.now()
    moved = Alert.objects.filter(pk=alert.pk, state__in=UNRESOLVED).update(
        state=Alert.State.RESOLVED, resolved_at=now
    )
    if not moved:
        return None
    alert.state, alert.resolved_at = Alert.State.RESOLVED, now
    if detail:
        alert.detail = f"{alert.detail}\nresolved: {detail}"[:2000]
        Alert.objects.filter(pk=alert.pk).update(detail=alert.detail)
    return alert, RESOLVED


def acknowledge(alert: Alert, user) -> bool:
    """Open → acknowledged (someone is on it); False if it was not open."""
    now = timezone.now()
    moved = Alert.objects.filter(pk=alert.pk, state=Alert.State.OPEN).update(
        state=Alert.State.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=user
    )
    if moved:
        alert.state, alert.acknowledged_at, alert.acknowledged_by = (
            Alert.State.ACKNOWLEDGED,
            now,
            user,
        )
    return bool(moved)


# --- notifying


def notice_body(alert: Alert, event: str) -> dict:
    rule = alert.rule
    return {
        "event": event,
        "alert_id": alert.pk,
        "rule": rule.name,
        "kind": rule.kind,
        "channel_id": rule.channel_id,
        "destination_id": rule.destination_id,
        "state": alert.state,
        "value": alert.value,
        "detail": alert.detail,
        "opened_at": alert.opened_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def notify(alert: Alert, event: str) -> None:
    """One notice per way the rule names (email, webhook), tried at once; one that fails is
    tried again by a task with backoff (``channels_app.tasks.send_alert_notice``) until it gets
    through or its attempts are spent, and its state is kept for the Alerts page."""
    for notice_id in _record_notices(alert, event):
        tried = send_notice(notice_id)
        if tried.outcome == RETRY:
            events.retry_alert_notice(notice_id, tried.retry_in)


def _record_notices(alert: Alert, event: str) -> list[int]:
    rule = alert.rule
    ways = [
        way
        for way, wanted in (
            (AlertNotice.Via.EMAIL, rule.emails()),
            (AlertNotice.Via.WEBHOOK, rule.webhook_url),
        )
        if wanted
    ]
    AlertNotice.objects.bulk_create(
        [AlertNotice(alert=alert, event=event, via=way) for way in ways], ignore_conflicts=True
    )
    fresh = AlertNotice.objects.filter(alert=alert, event=event, attempts=0)
    return list(fresh.values_list("pk", flat=True))


# A notice is tried at once, then again after 30 s, 1, 2, 4 and 8 min: never more than six
# times (no flood), and a notice that never got through says so on the Alerts page.
NOTICE_ATTEMPTS = 6
RETRY_FIRST_S = 30.0
RETRY_MAX_S = 600.0
# An attempt under way holds its notice this long (longer than a webhook's timeout).
ATTEMPT_LEASE_S = 60.0
# A notice this late past its retry lost its task (Redis restarted): beat enqueues it again.
LOST_AFTER_S = 120.0
SENT, RETRY, FAILED, SKIPPED = "sent", "retry", "failed", "skipped"


class NoticeFailed(Exception):
    """A notice did not get through (the reason is kept on the notice)."""


@dataclass(frozen=True, slots=True)
class Tried:
    outcome: str  # SENT, RETRY, FAILED, or SKIPPED (not due, or taken by another attempt)
    retry_in: float = 0.0


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt, after ``attempts`` failed ones: doubling, capped."""
    return min(RETRY_FIRST_S * 2 ** max(attempts - 1, 0), RETRY_MAX_S)


def send_notice(notice_id: int) -> Tried:
    """One attempt at a due notice, claimed by a conditional update (two workers cannot both
    send it); its outcome and the next attempt's time are kept on the row."""
    now = timezone.now()
    claimed = AlertNotice.objects.filter(
        pk=notice_id, state=AlertNotice.State.PENDING, next_attempt_at__lte=now
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=ATTEMPT_LEASE_S))
    if not claimed:
        return Tried(SKIPPED)
    notice = AlertNotice.objects.select_related("alert__rule").get(pk=notice_id)
    try:
        _send(notice)
    except NoticeFailed as exc:
        return _failed(notice, str(exc))
    AlertNotice.objects.filter(pk=notice_id).update(
        state=AlertNotice.State.SENT, sent_at=timezone.now(), last_error=""
    )
    return Tried(SENT)


def _failed(notice: AlertNotice, reason: str) -> Tried:
    spent = notice.attempts >= NOTICE_ATTEMPTS
    delay = retry_delay(notice.attempts)
    AlertNotice.objects.filter(pk=notice.pk).update(
        state=AlertNotice.State.FAILED if spent else AlertNotice.State.PENDING,
        last_error=reason[:500],
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
    )
    if spent:
        log.error(
            "alert %s: %s notice by %s not sent after %d attempts: %s",
            notice.alert_id,
            notice.event,
            notice.via,
            notice.attempts,
            reason,
        )
        return Tried(FAILED)
    log.warning(
        "alert %s: %s notice by %s failed (attempt %d), again in %.1f s: %s",
        *(notice.alert_id, notice.event, notice.via, notice.attempts, delay, reason),
    )
    return Tried(RETRY, delay)


def lost_notices(now: datetime | None = None) -> list[int]:
    """Notices still to send whose retry is long overdue: their task was lost."""
    late = (now or timezone.now()) - timedelta(seconds=LOST_AFTER_S)
    pending = AlertNotice.objects.filter(state=AlertNotice.State.PENDING, next_attempt_at__lt=late)
    return list(pending.values_list("pk", flat=True))


def _send(notice: AlertNotice) -> None:
    alert, rule = notice.alert, notice.alert.rule
    body = notice_body(alert, notice.event)
    if notice.via == AlertNotice.Via.EMAIL:
        subject = f"[hub] {notice.event}: {rule.name}"
        try:
            send_mail(subject, json.dumps(body, indent=2), None, rule.emails())
        except Exception as exc:  # any mail backend's error: kept on the notice, retried
            raise NoticeFailed(f"email not sent: {exc}") from exc
    else:
        _post_webhook(rule, body)


SEALED_PREFIX = "sealed:"


def seal_secret(text: str) -> str:
    """A webhook secret as stored: sealed when encryption at rest is on, as given otherwise."""
    if not text or not sealing.enabled():
        return text
    return SEALED_PREFIX + sealing.seal_token(text)


def open_secret(stored: str) -> str:
    if stored.startswith(SEALED_PREFIX):
        return sealing.unseal_token(stored.removeprefix(SEALED_PREFIX)).decode()
    return stored


def signature(secret: str, payload: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def _post_webhook(rule: AlertRule, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    try:
        if rule.webhook_secret:
            headers["X-Hub-Signature-256"] = signature(open_secret(rule.webhook_secret), payload)
        response = httpx.post(
            rule.webhook_url, content=payload, headers=headers, timeout=WEBHOOK_TIMEOUT_S
        )
    except (httpx.HTTPError, sealing.SealError) as exc:
        raise NoticeFailed(f"webhook not reached: {exc}") from exc
    if not response.is_success:
        raise NoticeFailed(f"webhook answered HTTP {response.status_code}")
