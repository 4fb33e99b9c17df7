"""In Chromium: on call, the Alerts page says how each notice fared. A webhook that refused the
first notice shows it retrying with the reason, then sent after two attempts (a real Celery
worker retrying against a real local server); the operator acknowledges from the same page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from channels_app import alerts
from channels_app.models import AlertNotice, AlertRule
from console.roles import Role, set_role
from tests import factories
from tests.channels_app.test_alerts import errors_now
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-oncall-password"


def test_the_alerts_page_shows_a_notice_retried_then_sent(
    page, asgi_server, celery_worker, fhir_sink, django_user_model, monkeypatch
):
    monkeypatch.setattr(alerts, "RETRY_FIRST_S", 3.0)
    set_role(django_user_model.objects.create_user("oncall", password=PASSWORD), Role.OPERATOR)
    channel = factories.channel(40721, name="Lab")
    AlertRule.objects.create(
        name="Lab errors",
        kind=AlertRule.Kind.ERRORS,
        channel=channel,
        threshold=1,
        webhook_url=fhir_sink.url,
    )
    fhir_sink.fail_next(1, status=502)
    errors_now(channel.pk, 2)
    alerts.evaluate()

    page.goto(f"{asgi_server}/login/?next=/alerts/")
    page.get_by_label("Username").fill("oncall")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    row = page.locator("#open-alerts tbody tr").first
    expect(row).to_contain_text("Lab errors")
    expect(row.locator(".notices")).to_contain_text("retrying, 1 failed so far")
    expect(row.locator(".notices")).to_contain_text("webhook answered HTTP 502")

    wait_for(lambda: AlertNotice.objects.get().state == "sent", what="the retry sent")
    page.reload()
    expect(row.locator(".notices")).to_have_text(re.compile(r"opened: webhook\s+sent after 2"))

    row.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#open-alerts tbody tr").first).to_contain_text("acknowledged")
