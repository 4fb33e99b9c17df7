"""Console forms: Bootstrap-styled widgets; a channel's settings; a destination's name and
delivery policy.

A source's and a transport's own settings are forms built from their config schemas
(console.config_forms)."""

from __future__ import annotations

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from channels_app import alerts
from channels_app.channels import checked_enabled, checked_new_name, checked_tags
from channels_app.destinations import POLICY_LIMITS, checked_ordering_key
from channels_app.models import AlertRule, Channel, Destination, ReplayJob
from channels_app.pipeline import replay
from channels_app.routing import RuleError, checked_rule
from console import alerting


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
        fields = ["name", "enabled", "route_when", *Destination.POLICY]
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
        widgets = {
            "route_when": forms.Textarea(
                attrs={"rows": 3, "class": "font-monospace", "spellcheck": "false"}
            )
        }
        labels = {
            "enabled": "Enabled",
            "route_when": "Route when",
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
            "route_when": "A FHIRPath condition on the message's canonical Bundle, e.g. "
            "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists(). The "
            "HL7 v2 header is there too: %messageType (ADT^A01), %messageCode, %triggerEvent, "
            "%sendingApplication, %sendingFacility. Blank: every message.",
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

    def clean_route_when(self) -> str:
        try:
            return checked_rule(self.cleaned_data["route_when"])
        except RuleError as exc:  # names the parser's position
            raise forms.ValidationError(str(exc)) from None

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


class TagsField(forms.CharField):
    """Tags typed comma-separated, stored as a list (checked as the API checks them)."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value):
        try:
            return checked_tags(super().to_python(value) or "")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


# Set by their own forms: the source's settings (SourceForm), the field rules (Mapping page).
NOT_ON_CHANNEL_FORM = ("source_config", "mapping")


class ChannelForm(BootstrapForm, forms.ModelForm):
    """A channel's settings (Channel.EDITABLE, but the source's own, which SourceForm holds)."""

    tags = TagsField(
        required=False,
        help_text="Comma-separated labels to group channels by, e.g. lab, north.",
    )

    class Meta:
        model = Channel
        fields = [f for f in Channel.EDITABLE if f not in NOT_ON_CHANNEL_FORM] + ["enabled"]
        labels = {
            "source_type": "Source",
            "dedupe_window_s": "Dedupe window (s)",
            "max_message_bytes": "Largest message (bytes)",
            "retention_days": "Keep bodies (days)",
            "route_filter": "Filter",
        }
        help_texts = {
            "enabled": "Off: its source stops listening or picking up files.",
            "max_message_bytes": "Larger messages are refused (NAK, 413).",
            "route_filter": "A FHIRPath condition on the message's canonical Bundle, checked "
            "before any destination's rule, e.g. %messageCode = 'ORU'. The HL7 v2 header is "
            "there as %messageType, %messageCode, %triggerEvent, %sendingApplication, "
            "%sendingFacility. A message it is false for is filtered. Blank: every message "
            "passes.",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "route_filter": forms.Textarea(
                attrs={"rows": 2, "class": "font-monospace", "spellcheck": "false"}
            ),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.style()

    def clean_enabled(self) -> bool:
        try:
            return checked_enabled(self.instance, self.cleaned_data["enabled"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_route_filter(self) -> str:
        try:
            return checked_rule(self.cleaned_data["route_filter"])
        except RuleError as exc:  # names the parser's position
            raise forms.ValidationError(str(exc)) from None


class CloneForm(BootstrapForm):
    name = forms.CharField(max_length=100, label="Name of the copy")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.style()

    def clean_name(self) -> str:
        try:
            return checked_new_name(self.cleaned_data["name"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


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
        self.fields["threshold"].required = False  # a state kind needs none (clean)
        self.fields["threshold"].help_text = "Not needed for a breaker or listener rule."
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
        for field, problem in alerting.rule_problems(data).items():
            self.add_error(field, problem)
        if data.get("threshold") is None:
            data["threshold"] = 0  # a state kind's
        return data


class BulkReplayForm(forms.Form):
    """How to replay what the list's filters match: the mode, a redeliver's destinations, a rate,
    and whether to only count (the dry run shown before anything runs)."""

    mode = forms.ChoiceField(choices=ReplayJob.Mode.choices)
    destinations = forms.ModelMultipleChoiceField(
        queryset=Destination.objects.only("id"), required=False
    )
    rate = forms.FloatField(required=False, min_value=replay.MIN_RATE, max_value=replay.MAX_RATE)
    dry_run = forms.BooleanField(required=False)

    def clean(self):
        data = super().clean()
        data["destinations"] = [d.pk for d in data.get("destinations") or []]
        if "mode" in data:
            try:
                replay.parse_destinations(data["mode"], data["destinations"])
            except ValueError as exc:
                raise forms.ValidationError({"destinations": str(exc)}) from None
        return data

    def problems(self) -> str:
        return "; ".join(f"{name}: {' '.join(errors)}" for name, errors in self.errors.items())
