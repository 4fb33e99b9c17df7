"""The destination pages: a form built from each transport's config schema, secrets write-only,
errors next to the field pydantic names, saves validated and audited as the API does them."""

from __future__ import annotations

import enum
import json
import re
from html.parser import HTMLParser
from typing import Literal, get_args, get_origin

import pytest
from cryptography.fernet import Fernet
from django import forms
from django.test import Client
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from adapters import registry
from adapters.registry import transport_class, transport_names
from channels_app import drafts
from channels_app.models import Destination
from channels_app.sealing import SECRET_MARKER, open_config
from console.config_forms import ConfigForm
from console.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

KEY = Fernet.generate_key().decode()
TOKEN = "tok-NEVER-SHOWN-5521"


class Inputs(HTMLParser):
    """Every form control: name -> its attributes (plus the tag and, for a textarea, its text)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.controls: dict[str, dict] = {}
        self._textarea: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("input", "select", "textarea") and attrs.get("name"):
            self.controls[attrs["name"]] = {**attrs, "tag": tag, "text": ""}
            self._textarea = attrs["name"] if tag == "textarea" else None

    def handle_data(self, data):
        if self._textarea:
            self.controls[self._textarea]["text"] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None


def expected_inputs(model: type[BaseModel], prefix: str = "config-") -> set[str]:
    """The input names a schema should give, worked out from the pydantic model on its own: a
    nested model's fields under ``outer__``, a discriminated union's under ``outer__tag__``."""
    names = set()
    for key, info in model.model_fields.items():
        members = [
            a for a in get_args(info.annotation) or (info.annotation,) if a is not type(None)
        ]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        if models and isinstance(info.discriminator, str):
            names.add(f"{prefix}{key}__{info.discriminator}")
            for member in models:
                tag_type = member.model_fields[info.discriminator].annotation
                assert get_origin(tag_type) is Literal
                (tag,) = get_args(tag_type)
                inner = expected_inputs(member, f"{prefix}{key}__{tag}__")
                names |= inner - {f"{prefix}{key}__{tag}__{info.discriminator}"}
        elif models:
            if type(None) in get_args(info.annotation):
                names.add(f"{prefix}{key}")  # the switch of an optional group
            names |= expected_inputs(models[0], f"{prefix}{key}__")
        else:
            names.add(f"{prefix}{key}")
    return names


def field_block(html: str, name: str) -> str:
    """The markup of the field named ``name`` (its label, input, errors and help)."""
    match = re.search(
        rf'<div class="mb-3" data-field="{re.escape(name)}">(.*?)\n</div>', html, re.S
    )
    assert match, f"no field {name} on the page"
    return match.group(1)


@pytest.fixture
def sealed(settings):
    settings.HUB_ENCRYPTION_KEYS = [KEY]


@pytest.fixture
def webhook(sealed) -> Destination:
    return Destination.objects.create(
        channel=factories.channel(40601),
        name="Billing hook",
        transport="webhook",
        config={
            "url": "https://billing.example/in",
            "headers": {"X-Source": "hub"},
            "auth": {"type": "bearer", "token": TOKEN},
        },
        timeout_s=30,
    )


def policy(destination: Destination, **changes) -> dict:
    """The policy part of the form as the page shows it, with ``changes``."""
    fields = [
        "name",
        "timeout_s",
        "max_attempts",
        "backoff_base_s",
        "backoff_max_s",
        "ordering_key",
        "breaker_error_rate",
        "breaker_min_samples",
        "breaker_window_s",
        "breaker_cooldown_s",
    ]
    data = {f: getattr(destination, f) for f in fields}
    data["rate_limit_per_s"] = destination.rate_limit_per_s or ""
    if destination.enabled:
        data["enabled"] = "on"
    return {**data, **changes}


def webhook_post(destination: Destination, **changes) -> dict:
    config = {
        "config-url": "https://billing.example/in",
        "config-method": "POST",
        "config-body": "canonical",
        "config-template": "",
        "config-headers": '{"X-Source": "hub"}',
        "config-auth__type": "bearer",
        "config-auth__bearer__token": "",
        "config-auth__basic__username": "",
        "config-auth__basic__password": "",
    }
    return {**policy(destination), **config, **changes}


# --- the form comes from the schema -------------------------------------------------------------


@pytest.mark.parametrize("transport", transport_names())
def test_every_config_field_of_every_transport_has_an_input(analyst, transport):
    channel = factories.channel(40602)
    html = analyst.get(f"/channels/{channel.pk}/destinations/new/?transport={transport}")
    assert html.status_code == 200
    controls = Inputs(html.content.decode()).controls
    wanted = expected_inputs(transport_class(transport).Config)
    assert wanted, transport
    assert wanted - controls.keys() == set(), f"{transport}: inputs missing"
    for name in ("name", "timeout_s", "max_attempts", "backoff_base_s", "rate_limit_per_s"):
        assert name in controls  # the delivery policy is on the same form


def test_inputs_follow_the_field_types_and_defaults(analyst):
    channel = factories.channel(40603)
    page = analyst.get(f"/channels/{channel.pk}/destinations/new/?transport=mllp")
    html = page.content.decode()
    controls = Inputs(html).controls
    # Labels made from the field names where the schema gives no title.
    assert 'for="id_config-connect_timeout_s">Connect timeout (s)<' in html
    assert 'for="id_config-max_ack_bytes">Max ACK bytes<' in html
    assert controls["config-port"]["type"] == "number"
    assert (controls["config-port"]["min"], controls["config-port"]["max"]) == ("1", "65535")
    assert controls["config-connections"]["value"] == "2"  # the schema's default
    assert "required" in controls["config-host"] and "required" not in controls["config-tls"]
    assert controls["config-tls__verify_hostname"]["type"] == "checkbox"
    assert controls["config-tls__min_version"]["tag"] == "select"
    assert controls["config-tls__key_password"]["type"] == "password"

    page = analyst.get(f"/channels/{channel.pk}/destinations/new/?transport=webhook")
    controls = Inputs(page.content.decode()).controls
    assert controls["config-url"]["type"] == "url"
    assert controls["config-headers"]["tag"] == "textarea"
    assert json.loads(controls["config-headers"]["text"]) == {}
    assert controls["config-auth__type"]["tag"] == "select"
    assert 'for="id_config-url">URL<' in page.content.decode()
    assert "Where each message is sent." in page.content.decode()  # the field's description


def test_changing_the_transport_swaps_in_its_fields(analyst):
    channel = factories.channel(40604)
    url = f"/channels/{channel.pk}/destinations/new/"
    fragment = analyst.get(url, {"transport": "file"}, headers={"HX-Request": "true"})
    html = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in html
    assert set(Inputs(html).controls) == expected_inputs(transport_class("file").Config)
    chooser = analyst.get(url)
    assert chooser.status_code == 200
    for name in transport_names():
        assert f'href="?transport={name}"' in chooser.content.decode()
    assert analyst.get(url, {"transport": "nope"}).status_code == 400


# --- secrets ------------------------------------------------------------------------------------


def test_a_stored_secret_is_never_rendered_back(analyst, webhook):
    html = analyst.get(f"/destinations/{webhook.pk}/edit/").content.decode()
    assert TOKEN not in html and "gAAAAA" not in html
    assert SECRET_MARKER not in field_block(html, "config-auth__bearer__token")
    token = Inputs(html).controls["config-auth__bearer__token"]
    assert token["type"] == "password" and "value" not in token
    assert "stored — leave blank to keep" in field_block(html, "config-auth__bearer__token")
    # Not even when the form comes back with errors, nor what was typed.
    data = webhook_post(webhook, **{"config-url": "nope", "config-auth__bearer__token": "typed"})
    again = analyst.post(f"/destinations/{webhook.pk}/edit/", data).content.decode()
    assert TOKEN not in again and "typed" not in again


def test_a_blank_secret_keeps_the_stored_sealed_value(analyst, webhook):
    before = Destination.objects.get(pk=webhook.pk).config["auth"]["token"]
    response = analyst.post(f"/destinations/{webhook.pk}/edit/", webhook_post(webhook, timeout_s=9))
    assert response.status_code == 302
    drafts.publish_draft(webhook.channel)
    webhook.refresh_from_db()
    assert webhook.timeout_s == 9
    assert webhook.config["auth"]["token"] == before  # the same sealed token, not re-sealed
    assert open_config("webhook", webhook.config)["auth"]["token"] == TOKEN

    data = webhook_post(webhook, **{"config-auth__bearer__token": "tok-new-1"})
    assert analyst.post(f"/destinations/{webhook.pk}/edit/", data).status_code == 302
    drafts.publish_draft(webhook.channel)
    webhook.refresh_from_db()
    assert "sealed" in webhook.config["auth"]["token"]
    assert open_config("webhook", webhook.config)["auth"]["token"] == "tok-new-1"


def test_an_optional_stored_secret_can_be_removed(analyst, sealed):
    d = factories.fhir_destination(
        factories.channel(40605),
        "https://ehr.example/fhir",
        config={"base_url": "https://ehr.example/fhir", "bearer_token": TOKEN},
    )
    fields = {"config-base_url": "https://ehr.example/fhir", "config-mode": "transaction"}
    fields["config-headers"] = "{}"
    html = analyst.get(f"/destinations/{d.pk}/edit/").content.decode()
    assert "config-bearer_token__clear" in Inputs(html).controls
    data = {**policy(d), **fields, "config-bearer_token": "", "config-bearer_token__clear": "on"}
    assert analyst.post(f"/destinations/{d.pk}/edit/", data).status_code == 302
    drafts.publish_draft(d.channel)
    d.refresh_from_db()
    assert d.config.get("bearer_token") is None


# --- errors next to their field, nothing saved ----------------------------------------------------


def test_an_invalid_value_shows_the_fields_error_and_saves_nothing(analyst, webhook):
    stored = Destination.objects.get(pk=webhook.pk).config
    data = webhook_post(webhook, timeout_s=0, **{"config-url": "not a url"})
    response = analyst.post(f"/destinations/{webhook.pk}/edit/", data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing was saved" in html
    url = field_block(html, "config-url")
    assert "invalid-feedback" in url and "valid URL" in url and "is-invalid" in url
    assert "greater than or equal to 0.1" in field_block(html, "timeout_s")
    assert "invalid-feedback" not in field_block(html, "config-method")
    webhook.refresh_from_db()
    assert webhook.config == stored and webhook.timeout_s == 30
    assert not AuditEvent.objects.filter(action__startswith="destination.").exists()


def test_a_nested_error_lands_on_the_nested_field(analyst, sealed):
    channel = factories.channel(40606)
    url = f"/channels/{channel.pk}/destinations/new/"
    page = Inputs(analyst.get(url, {"transport": "webhook"}).content.decode()).controls
    data = {n: c.get("value", "") for n, c in page.items() if c["tag"] == "input"}
    data.update({n: c["text"] for n, c in page.items() if c["tag"] == "textarea"})
    data.pop("config-tls", None)
    data.update(
        {
            "transport": "webhook",
            "name": "hook",
            "config-url": "https://hook.example/",
            "config-method": "POST",
            "config-body": "canonical",
            "config-auth__type": "basic",
            "config-auth__basic__username": "",
            "config-auth__basic__password": "",
        }
    )
    html = analyst.post(url, data).content.decode()
    assert "Field required" in field_block(html, "config-auth__basic__username")
    assert "Field required" in field_block(html, "config-auth__basic__password")
    assert not Destination.objects.filter(channel=channel).exists()


def test_a_model_level_error_names_its_field_or_the_form(analyst, sealed):
    d = factories.fhir_destination(factories.channel(40607), "https://ehr.example/fhir")
    data = {
        **policy(d),
        "config-base_url": "https://ehr.example/fhir",
        "config-mode": "transaction",
        "config-headers": '{"X-A": 1}',  # not a string
        "config-bearer_token": "tok",
        "config-oauth2": "on",
        "config-oauth2__token_url": "https://idp.example/token",
        "config-oauth2__client_id": "hub",
        "config-oauth2__client_secret": "s",
        "config-oauth2__client_auth": "basic",
    }
    html = analyst.post(f"/destinations/{d.pk}/edit/", data).content.decode()
    assert "valid string" in field_block(html, "config-headers")
    data["config-headers"] = "{}"
    html = analyst.post(f"/destinations/{d.pk}/edit/", data).content.decode()
    assert 'id="config-errors"' in html and "give bearer_token or oauth2, not both" in html
    d.refresh_from_db()
    assert "oauth2" not in d.config


def test_the_page_and_the_api_refuse_the_same_config(analyst, webhook):
    template = '{"mrn": "=Bundle.entry.("}'  # a FHIRPath syntax error
    data = webhook_post(webhook, **{"config-body": "template", "config-template": template})
    html = analyst.post(f"/destinations/{webhook.pk}/edit/", data).content.decode()
    block = field_block(html, "config-template")
    assert "FHIRPath syntax error" in block
    api = analyst.patch(
        f"/api/v1/destinations/{webhook.pk}/",
        {
            "config": {
                "url": "https://billing.example/in",
                "body": "template",
                "template": {"mrn": "=Bundle.entry.("},
            }
        },
        content_type="application/json",
    )
    assert api.status_code == 400 and "FHIRPath syntax error" in api.json()["config"][0]


def test_an_ordering_key_that_is_no_v2_path_is_refused_by_page_and_api(analyst, webhook):
    html = analyst.post(
        f"/destinations/{webhook.pk}/edit/", webhook_post(webhook, ordering_key="PID3")
    ).content.decode()
    assert "is not an HL7 v2 path" in field_block(html, "ordering_key")
    api = analyst.patch(
        f"/api/v1/destinations/{webhook.pk}/", {"ordering_key": "PID3"}, "application/json"
    )
    assert api.status_code == 400 and "is not an HL7 v2 path" in api.json()["ordering_key"][0]
    ok = analyst.patch(
        f"/api/v1/destinations/{webhook.pk}/", {"ordering_key": " PID-3.1 "}, "application/json"
    )
    assert ok.status_code == 200 and ok.json()["ordering_key"] == "PID-3.1"


def test_a_name_is_unique_within_its_channel(analyst, webhook):
    Destination.objects.create(
        channel=webhook.channel, name="Other", transport="file", config={"directory": "/tmp/x"}
    )
    response = analyst.post(
        f"/destinations/{webhook.pk}/edit/", webhook_post(webhook, name="Other")
    )
    assert "already has a destination of that name" in field_block(
        response.content.decode(), "name"
    )


# --- saving is audited as the API audits it ---------------------------------------------------


def test_a_save_writes_one_audit_row_with_the_diff(analyst, analyst_user, webhook):
    # The form as shown, saved unchanged: nothing to audit (defaults the config left out stay out).
    assert (
        analyst.post(f"/destinations/{webhook.pk}/edit/", webhook_post(webhook)).status_code == 302
    )
    assert not AuditEvent.objects.filter(action__startswith="channel.").exists()
    assert drafts.draft_of(webhook.channel)["destinations"][0]["config"].keys() == {
        "url",
        "headers",
        "auth",
    }

    data = webhook_post(
        webhook,
        timeout_s=12,
        **{
            "config-headers": '{"X-Source": "hub", "X-Env": "prod"}',
            "config-auth__bearer__token": "tok-rotated",
        },
    )
    assert analyst.post(f"/destinations/{webhook.pk}/edit/", data).status_code == 302
    event = AuditEvent.objects.get(action="channel.draft_saved")
    assert event.actor == analyst_user and event.target == f"channel:{webhook.channel_id}"
    changed = f"{SECRET_MARKER} (changed)"
    at = f"destinations.{webhook.name}"
    assert event.detail["changes"] == {
        f"{at}.timeout_s": [30.0, 12.0],
        f"{at}.config.auth.token": [SECRET_MARKER, changed],
        f"{at}.config.headers.X-Env": [None, changed],
    }
    assert TOKEN not in json.dumps(event.detail) and "tok-rotated" not in json.dumps(event.detail)
    assert Destination.objects.get(pk=webhook.pk).timeout_s == 30  # the draft, not what runs

    # Saving again with nothing changed writes nothing.
    assert (
        analyst.post(
            f"/destinations/{webhook.pk}/edit/",
            webhook_post(
                webhook, timeout_s=12, **{"config-headers": '{"X-Source": "hub", "X-Env": "prod"}'}
            ),
        ).status_code
        == 302
    )
    assert AuditEvent.objects.filter(action="channel.draft_saved").count() == 1


def test_the_page_and_the_api_write_the_same_draft(analyst, webhook):
    analyst.post(
        f"/destinations/{webhook.pk}/edit/",
        webhook_post(webhook, timeout_s=7, **{"config-method": "PUT"}),
    )
    by_page = drafts.draft_of(webhook.channel)
    drafts.discard_draft(webhook.channel)
    document = analyst.get(f"/api/v1/channels/{webhook.channel_id}/draft/").json()["snapshot"]
    document["destinations"][0] |= {"timeout_s": 7}
    document["destinations"][0]["config"]["method"] = "PUT"
    answer = analyst.put(
        f"/api/v1/channels/{webhook.channel_id}/draft/",
        {"snapshot": document},
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.content
    assert drafts.draft_of(webhook.channel) == by_page
    saved = AuditEvent.objects.filter(action="channel.draft_saved").order_by("id")
    page, api = (e.detail["changes"] for e in saved)
    assert page == api and set(page) == {
        f"destinations.{webhook.name}.timeout_s",
        f"destinations.{webhook.name}.config.method",
    }


def test_adding_a_destination_drafts_it_then_creates_it_sealed(analyst, sealed):
    channel = factories.channel(40608)
    data = {
        "transport": "webhook",
        "name": "New hook",
        "enabled": "on",
        "timeout_s": "15",
        "max_attempts": "5",
        "backoff_base_s": "2",
        "backoff_max_s": "600",
        "breaker_error_rate": "0.5",
        "breaker_min_samples": "20",
        "breaker_window_s": "60",
        "breaker_cooldown_s": "30",
        "config-url": "https://new.example/hook",
        "config-method": "POST",
        "config-body": "canonical",
        "config-headers": "{}",
        "config-auth__type": "bearer",
        "config-auth__bearer__token": TOKEN,
    }
    response = analyst.post(f"/channels/{channel.pk}/destinations/new/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not Destination.objects.filter(channel=channel).exists()  # in the draft only
    assert TOKEN not in json.dumps(drafts.draft_of(channel))
    event = AuditEvent.objects.get(action="channel.draft_saved")
    assert event.detail["changes"]["destinations.New hook.config.auth.token"] == [
        None,
        f"{SECRET_MARKER} (changed)",
    ]
    assert TOKEN not in json.dumps(event.detail)
    page = analyst.get(response.url.split("#")[0]).content.decode()
    assert "added to the draft" in page and 'data-draft="' in page
    drafts.publish_draft(channel)
    created = Destination.objects.get(channel=channel, name="New hook")
    assert created.timeout_s == 15 and created.max_attempts == 5
    assert TOKEN not in json.dumps(created.config)
    assert open_config("webhook", created.config)["auth"]["token"] == TOKEN


# --- roles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_may_not_edit(users, webhook, role):
    client = Client()
    client.force_login(users[role])
    channel = webhook.channel
    assert client.get(f"/destinations/{webhook.pk}/edit/").status_code == 403
    assert (
        client.post(
            f"/destinations/{webhook.pk}/edit/", webhook_post(webhook, timeout_s=1)
        ).status_code
        == 403
    )
    assert client.get(f"/channels/{channel.pk}/destinations/new/?transport=file").status_code == 403
    webhook.refresh_from_db()
    assert webhook.timeout_s == 30
    assert not AuditEvent.objects.filter(action__startswith="destination.").exists()
    page = client.get("/channels/").content.decode()
    assert (
        'data-action="edit-destination"' not in page and 'data-action="add-destination"' not in page
    )


@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_analysts_and_admins_see_edit_and_add_on_the_channels_page(users, webhook, role):
    client = Client()
    client.force_login(users[role])
    page = client.get("/channels/").content.decode()
    assert f'href="/destinations/{webhook.pk}/edit/"' in page
    assert f'href="/channels/{webhook.channel_id}/destinations/new/"' in page
    assert client.get(f"/destinations/{webhook.pk}/edit/").status_code == 200


# --- the builder on every kind of field a schema may hold ------------------------------------


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Inner(BaseModel):
    code: str = Field(min_length=2)
    pin: SecretStr


class Kinds(BaseModel):
    """Every shape the builder knows, in one schema (not a real transport)."""

    model_config = ConfigDict(extra="forbid")

    display: str = Field(title="Display name", description="Shown to people.")
    level: Level = Level.LOW
    count: int = Field(3, ge=1, le=9)
    ratio: float | None = None
    loud: bool = False
    tags: list[str] = []
    limits: dict[str, int] = {}
    inner: Inner
    spare: Inner | None = None


@pytest.fixture
def kinds(monkeypatch):
    """``Kinds`` registered as a transport for the length of one test."""

    class KindsTransport:
        name = "kinds"
        Config = Kinds

        def __init__(self, config):
            self.config = config

    transport_names()  # the built-in ones first, so the registry is complete
    monkeypatch.setitem(registry._transports, "kinds", KindsTransport)
    return "kinds"


def test_the_builder_turns_each_type_into_its_input(kinds):
    form = ConfigForm(kinds)
    f = form.fields
    assert (f["display"].label, f["display"].help_text) == ("Display name", "Shown to people.")
    assert f["display"].required and not f["ratio"].required
    assert [c for c, _ in f["level"].choices] == ["low", "high"] and f["level"].initial == "low"
    assert f["count"].initial == 3
    assert (f["count"].widget.attrs["min"], f["count"].widget.attrs["max"]) == (1, 9)
    assert isinstance(f["ratio"], forms.FloatField) and isinstance(f["loud"], forms.BooleanField)
    assert isinstance(f["tags"].widget, forms.Textarea) and "JSON list" in f["tags"].help_text
    assert isinstance(f["limits"].widget, forms.Textarea)
    assert f["inner__code"].widget.attrs["minlength"] == 2
    assert isinstance(f["inner__pin"].widget, forms.PasswordInput)
    assert isinstance(f["spare"], forms.BooleanField) and not f["spare"].initial  # a switch
    assert {"spare__code", "spare__pin"} <= f.keys()


def test_the_builder_assembles_and_validates_with_pydantic(kinds):
    data = {
        "config-display": "Ward 7",
        "config-level": "high",
        "config-count": "3",
        "config-tags": '["a", "b"]',
        "config-limits": '{"x": "many"}',
        "config-inner__code": "X",
        "config-inner__pin": "",
    }
    form = ConfigForm(kinds, data)
    assert not form.is_valid() and form.config is None
    assert "valid integer" in form.errors["limits"][0]  # pydantic's loc: ("limits", "x")
    assert "at least 2 characters" in form.errors["inner__code"][0]
    assert form.errors["inner__pin"] == ["This field is required."]  # one message, not two
    assert "spare__code" not in form.errors  # switched off: not checked

    data.update({"config-limits": '{"x": 2}', "config-inner__code": "XY", "config-inner__pin": "9"})
    form = ConfigForm(kinds, data)
    assert form.is_valid(), form.errors
    # What was set, and nothing the defaults already say (count 3, loud False, spare None); the
    # secret comes sealed (the suite always runs with a key).
    assert "sealed" in form.config["inner"]["pin"]
    assert open_config(kinds, form.config) == {
        "display": "Ward 7",
        "level": "high",
        "tags": ["a", "b"],
        "limits": {"x": 2},
        "inner": {"code": "XY", "pin": "9"},
    }


def test_the_fhir_rest_mode_is_a_choice_explained_on_the_form(analyst):
    channel = factories.channel(40631)
    page = analyst.get(f"/channels/{channel.pk}/destinations/new/?transport=fhir_rest")
    html = page.content.decode()
    assert Inputs(html).controls["config-mode"]["tag"] == "select"
    options = re.findall(r'<option value="([^"]*)"', html.split('name="config-mode"')[1])
    assert options[:3] == ["transaction", "batch", "per_resource"]
    assert "one batch Bundle per dependency level" in html  # the field's description
    assert "a retried message updates what it stored before" in html
    assert Inputs(html).controls["config-if_too_large"]["tag"] == "select"
    choices = html.split('name="config-if_too_large"')[1].split("</select>")[0]
    assert re.findall(r'<option value="([^"]*)"', choices) == ["batch", "fail"]
    assert "entries are not applied all or nothing (the attempt says so)" in html
