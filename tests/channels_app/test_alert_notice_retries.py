"""A notice that does not get through is tried again with backoff by a real Celery worker, against
a real local webhook server that fails first and then accepts; its delivery state is kept and
shown. Never a flood (a bounded number of attempts), never lost silently (a notice that never got
through is marked failed, with the reason, on the Alerts page)."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends import locmem
from django.utils import timezone

from channels_app import alerts, tasks
from channels_app.models import Alert, AlertNotice, AlertRule
from tests import factories
from tests.channels_app.test_alerts import SECRET, errors_now
from tests.support import signed_in, wait_for


@pytest.fixture
def quick_retries(monkeypatch):
    """Backoff in tenths of a second (the worker runs in this process: it sees the same module)."""
    monkeypatch.setattr(alerts, "RETRY_FIRST_S", 0.2)
    monkeypatch.setattr(alerts, "RETRY_MAX_S", 0.8)
    monkeypatch.setattr(alerts, "NOTICE_ATTEMPTS", 4)


def webhook_rule(channel, url: str) -> AlertRule:
    return AlertRule.objects.create(
        name="Lab errors",
        kind=AlertRule.Kind.ERRORS,
        channel=channel,
        threshold=1,
        webhook_url=url,
        webhook_secret=SECRET,
    )


def notice() -> AlertNotice:
    return AlertNotice.objects.get()


def alerts_page_text(user) -> str:
    """The Alerts page as read: its text, without tags, spaces collapsed."""
    html = signed_in(user).get("/alerts/").content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_failed_webhook_notice_is_retried_until_it_is_accepted(
    celery_worker, quick_retries, fhir_sink, operator_user
):
    channel = factories.channel(40711, name="Lab")
    webhook_rule(channel, fhir_sink.url)
    fhir_sink.fail_next(2, status=503)
    errors_now(channel.pk, 1)

    [(alert, event)] = alerts.evaluate()
    assert event == alerts.OPENED
    first = notice()
    assert (first.state, first.attempts) == ("pending", 1)
    assert first.last_error == "webhook answered HTTP 503"

    wait_for(lambda: notice().state == "sent", timeout=20, what="the notice sent")
    sent = notice()
    assert sent.attempts == 3 and sent.last_error == "" and sent.sent_at is not None
    statuses = [r["status"] for r in fhir_sink.requests]
    assert statuses == [503, 503, 200]
    bodies = {r["body"] for r in fhir_sink.requests}
    assert len(bodies) == 1 and json.loads(bodies.pop())["alert_id"] == alert.pk

    assert "opened: webhook sent after 3 attempts" in alerts_page_text(operator_user)


def test_a_notice_that_never_gets_through_stops_and_says_so(
    celery_worker, quick_retries, fhir_sink, viewer_user
):
    channel = factories.channel(40712, name="Lab")
    webhook_rule(channel, fhir_sink.url)
    fhir_sink.fail_next(50, status=500)
    errors_now(channel.pk, 1)
    alerts.evaluate()

    wait_for(lambda: notice().state == "failed", timeout=20, what="the notice given up")
    time.sleep(2.0)  # longer than any backoff left: nothing more is sent
    assert len(fhir_sink.requests) == alerts.NOTICE_ATTEMPTS == notice().attempts
    assert notice().last_error == "webhook answered HTTP 500"

    page = alerts_page_text(viewer_user)
    assert "opened: webhook failed after 4 attempts webhook answered HTTP 500" in page
    assert Alert.objects.get().state == Alert.State.OPEN  # the alert itself stands


def test_the_resolve_notice_is_its_own_and_each_is_sent_once(celery_worker, fhir_sink):
    channel = factories.channel(40713, name="Lab")
    rule = webhook_rule(channel, fhir_sink.url)
    errors_now(channel.pk, 1)
    alerts.evaluate()
    rule.threshold = 100
    rule.save()
    alerts.evaluate()
    alerts.evaluate()
    wait_for(lambda: AlertNotice.objects.filter(state="sent").count() == 2, what="both sent")
    assert sorted(AlertNotice.objects.values_list("event", flat=True)) == ["opened", "resolved"]
    assert [json.loads(r["body"])["event"] for r in fhir_sink.requests] == ["opened", "resolved"]


def test_a_notice_whose_retry_was_lost_is_sent_by_the_next_evaluation(celery_worker, fhir_sink):
    channel = factories.channel(40714, name="Lab")
    rule = webhook_rule(channel, fhir_sink.url)
    alert = Alert.objects.create(rule=rule)
    lost = AlertNotice.objects.create(
        alert=alert,
        event=alerts.OPENED,
        via=AlertNotice.Via.WEBHOOK,
        attempts=1,
        last_error="webhook answered HTTP 503",
        next_attempt_at=timezone.now() - timedelta(minutes=10),  # its task never came
    )
    errors_now(channel.pk, 1)  # still firing: the evaluation itself sends nothing new
    tasks.evaluate_alerts()
    wait_for(lambda: notice().state == "sent", what="the lost notice sent")
    assert notice().pk == lost.pk and notice().attempts == 2 and len(fhir_sink.requests) == 1


class FlakyMail(locmem.EmailBackend):
    """The test outbox behind a mail server that refuses the first ``refusals`` sends."""

    refusals = 0

    def send_messages(self, messages):
        if FlakyMail.refusals:
            FlakyMail.refusals -= 1
            raise ConnectionRefusedError("mail server refused the connection")
        return super().send_messages(messages)


def test_an_email_notice_that_fails_is_retried_and_sent_once(
    celery_worker, quick_retries, settings
):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyMail"
    FlakyMail.refusals = 1
    channel = factories.channel(40715, name="Lab")
    AlertRule.objects.create(
        name="Lab errors",
        kind=AlertRule.Kind.ERRORS,
        channel=channel,
        threshold=1,
        notify_emails="oncall@example.org",
    )
    errors_now(channel.pk, 1)
    alerts.evaluate()
    assert notice().last_error == "email not sent: mail server refused the connection"
    assert mail.outbox == []

    wait_for(lambda: notice().state == "sent", what="the email sent")
    assert notice().attempts == 2
    assert [m.to for m in mail.outbox] == [["oncall@example.org"]]
