"""Alert rules (data, edited by analysts) and the alerts they open: open → acknowledged →
resolved, one unresolved alert per rule at a time (a database constraint: never a flood)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        ERRORS = "errors", "Errors in the window, at least"
        ERROR_RATE = "error_rate", "Error rate in the window, at least (0 to 1)"
        P95 = "p95", "p95 latency received → delivered in the window, above (ms)"
        QUEUE_DEPTH = "queue_depth", "Open deliveries, at least"
        OLDEST_AGE = "oldest_age", "Oldest waiting delivery, older than (s)"
        INACTIVITY = "inactivity", "No message (of the type, if given) in the window"
        BREAKER_OPEN = "breaker_open", "Destination breaker open"
        LISTENER_DOWN = "listener_down", "MLLP/file listener in error or not running"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Where it looks: a destination, a channel, or (neither) everywhere.
    channel = models.ForeignKey(
        "channels_app.Channel", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    destination = models.ForeignKey(
        "channels_app.Destination",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    threshold = models.FloatField(default=0)
    window_min = models.PositiveIntegerField(default=5)
    message_type = models.CharField(max_length=40, blank=True)  # inactivity: e.g. ADT^A01
    # Inactivity is only looked for between these times (server time zone); empty: always.
    active_from = models.TimeField(null=True, blank=True)
    active_until = models.TimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    notify_emails = models.TextField(blank=True)  # comma-separated
    webhook_url = models.URLField(blank=True)
    # Signs the body (HMAC-SHA256); sealed at rest when HUB_ENCRYPTION_KEYS is set (alerts.py).
    webhook_secret = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def emails(self) -> list[str]:
        return [e.strip() for e in self.notify_emails.split(",") if e.strip()]


class Alert(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    state = models.CharField(max_length=15, choices=State.choices, default=State.OPEN)
    opened_at = models.DateTimeField(default=timezone.now)
    value = models.FloatField(null=True, blank=True)  # what was measured when it opened
    detail = models.TextField(blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"],
                condition=~models.Q(state="resolved"),
                name="alert_one_unresolved_per_rule",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} ({self.state})"


class AlertNotice(models.Model):
    """One notice of one alert's move (opened, resolved) by one way (email, webhook): sent at
    once, retried with backoff when it fails, and its delivery state kept, so a notice that never
    got through shows on the Alerts page instead of vanishing into a log."""

    class Via(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class State(models.TextChoices):
        PENDING = "pending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notices")
    event = models.CharField(max_length=10)  # opened, resolved
    via = models.CharField(max_length=10, choices=Via.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # When it may be tried (again); an attempt under way holds it a while (a lease).
    next_attempt_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "event", "via"], name="alert_notice_once")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="alert_notice_pending",
                condition=models.Q(state="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.via} ({self.state})"
