"""Console forms: Bootstrap-styled widgets, and the destination's name and delivery policy.

The transport's own settings are a form built from its config schema (console.config_forms)."""

from __future__ import annotations

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from channels_app import alerts
from channels_app.destinations import POLICY_LIMITS, checked_ordering_key
from channels_app.models import AlertRule, Destination


def widget_class(widget: forms.Widget) -> str:
    if isinstance(widget, forms.CheckboxInput):
        return "form-check-input"
    if isinstance(widget, forms.Select):
        return "form-select"
    return "form-control"


class FloatField(forms.FloatField):
    """A float shown without a trailing ".0" when it is whole (a timeout of 30, not 30.0)."""

    def prepare_value(self, value):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class BootstrapForm(forms.Form):
    """Every widget gets its Bootstrap class, and ``is-invalid`` once the field has an error."""

    def style(self) -> None:
        for field in self.fields.values():
            classes = field.widget.attrs.get("class", "")
            if widget_class(field.widget) not in classes.split():
                field.widget.attrs["class"] = f"{widget_class(field.widget)} {classes}".strip()

    def full_clean(self) -> None:
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                attrs = self.fields[name].widget.attrs
                if "is-invalid" not in attrs.get("class", ""):
                    attrs["class"] = f"{attrs.get('class', '')} is-invalid".strip()


class DestinationForm(BootstrapForm, forms.ModelForm):
    """A destination's name and delivery policy, with the bounds the REST API applies."""

    class Meta:
        model = Destination
        fields = ["name", "enabled", *Destination.POLICY]
        field_classes = {
            name: FloatField
            for name in (
                "timeout_s",
                "backoff_base_s",
                "backoff_max_s",
                "rate_limit_per_s",
                "breaker_error_rate",
                "breaker_window_s",
                "breaker_cooldown_s",
            )
        }
        labels = {
            "enabled": "Enabled",
            "timeout_s": "Timeout (s)",
            "max_attempts": "Max attempts",
            "backoff_base_s": "Backoff base (s)",
            "backoff_max_s": "Backoff max (s)",
            "ordering_key": "Ordering key",
            "rate_limit_per_s": "Rate limit (per s)",
            "breaker_error_rate": "Error rate to open",
            "breaker_min_samples": "Min samples",
            "breaker_window_s": "Window (s)",
            "breaker_cooldown_s": "Cooldown (s)",
        }
        help_texts = {
            "enabled": "A disabled destination receives no new deliveries.",
            "timeout_s": "For one send, connection included.",
            "backoff_base_s": "The first retry waits about this long; each next one twice as "
            "long (with jitter).",
            "backoff_max_s": "No retry waits longer.",
            "ordering_key": "An HL7 v2 path on the source message, e.g. PID-3.1: deliveries "
            "with the same value there go out strictly in order. Blank: not ordered.",
            "rate_limit_per_s": "Sends per second, shared by all workers. Blank: unlimited.",
            "max_attempts": "0 retries without limit.",
            "breaker_min_samples": "Sends needed in the window before the circuit can open; "
            "0 turns the breaker off.",
            "breaker_error_rate": "Share of failed sends (0.01–1) in the window that opens the "
            "circuit; deliveries then wait as queued.",
            "breaker_window_s": "The span the error rate is measured over.",
            "breaker_cooldown_s": "How long an open circuit waits before one probe send.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, limits in POLICY_LIMITS.items():
            field = self.fields.get(name)
            if field is None:
                continue
            if "min_value" in limits:
                field.validators.append(MinValueValidator(limits["min_value"]))
                field.widget.attrs["min"] = limits["min_value"]
            if "max_value" in limits:
                field.validators.append(MaxValueValidator(limits["max_value"]))
                field.widget.attrs["max"] = limits["max_value"]
        self.style()

    def clean_ordering_key(self) -> str:
        try:
            return checked_ordering_key(self.cleaned_data["ordering_key"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        same = Destination.objects.filter(channel_id=self.instance.channel_id, name=name)
        if same.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("This channel already has a destination of that name.")
        return name


class AlertRuleForm(forms.ModelForm):
    """An alert rule; the webhook secret is write-only (left empty, the saved one stays)."""

    webhook_url = forms.URLField(required=False, assume_scheme="https", label="Webhook URL")
    webhook_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs each webhook body (X-Hub-Signature-256: sha256=HMAC). Leave empty to "
        "keep the saved one.",
    )

    class Meta:
        model = AlertRule
        fields = [
            "name",
            "kind",
            "channel",
            "destination",
            "threshold",
            "window_min",
            "message_type",
            "active_from",
            "active_until",
            "enabled",
            "notify_emails",
            "webhook_url",
            "webhook_secret",
        ]
        labels = {"window_min": "Window (minutes)", "notify_emails": "Email to"}
        help_texts = {
            "channel": "Empty: every channel.",
            "destination": "Empty: every destination of the channel (or everywhere).",
            "message_type": "Inactivity only: e.g. ADT^A01; empty counts every message.",
            "active_from": "Inactivity only: looked for between these times (HH:MM).",
            "notify_emails": "Comma-separated addresses.",
        }
        widgets = {
            "active_from": forms.TimeInput(attrs={"type": "time"}),
            "active_until": forms.TimeInput(attrs={"type": "time"}),
            "notify_emails": forms.TextInput(),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved_secret = self.instance.webhook_secret
        for field in self.fields.values():
            css = "form-check-input" if isinstance(field, forms.BooleanField) else "form-control"
            if isinstance(field.widget, forms.Select):
                css = "form-select"
            field.widget.attrs.setdefault("class", css)

    def clean_webhook_secret(self):
        given = self.cleaned_data.get("webhook_secret")
        return alerts.seal_secret(given) if given else self.saved_secret

    def clean(self):
        data = super().clean()
        destination, channel = data.get("destination"), data.get("channel")
        if destination and channel and destination.channel_id != channel.pk:
            self.add_error("destination", "This destination belongs to another channel.")
        if data.get("kind") == AlertRule.Kind.BREAKER_OPEN and data.get("threshold") is None:
            data["threshold"] = 0
        if (data.get("active_from") is None) != (data.get("active_until") is None):
            self.add_error("active_until", "Give both times, or neither.")
        return data
