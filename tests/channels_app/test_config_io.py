"""Config as code: an export imported and exported again gives the same bytes (every source type,
every transport, samples with accepted outputs, secrets only as the marker); an import keeps the
stored secrets where the file has the marker; a file with an unknown key, a bad setting or a rule
that does not compile is refused, naming the channel and the key path, and nothing is applied."""

from __future__ import annotations

import pytest

from channels_app import config_io, samples
from channels_app.channels import configuration
from channels_app.config_io import Refused, apply_channel, export_yaml, plan_document
from channels_app.models import Channel, ChannelSample, Delivery, Destination, Message
from channels_app.sealing import SECRET_MARKER, open_config, seal_json
from channels_app.sources import opened_source_config
from tests import factories

pytestmark = pytest.mark.django_db

JSON_MAP = {
    "resources": ["Patient"],
    "rules": [
        {"name": "mrn", "source": "%input.mrn", "target": "Patient.identifier[0].value"},
        {"name": "family", "source": "%input.last", "target": "Patient.name[0].family"},
    ],
}


def every_kind(*, secrets: bool) -> list[Channel]:
    """A channel of each source type; the MLLP one sends to every transport."""
    tls = {"cert_file": "/etc/hub/cert.pem", "key_file": "/etc/hub/key.pem"}
    if secrets:
        tls["key_password"] = "key-pass"
    mllp = factories.channel(
        40851,
        name="ADT demo",
        description="Admissions\nfrom the EHR",
        tags=["adt", "north"],
        source_config={"host": "127.0.0.1", "port": 40851, "tls": tls},
        route_filter="%messageCode = 'ADT'",
        retention_days=30,
        mapping={
            "rules": [
                {
                    "name": "site",
                    "source": "PV1-3.1",
                    "target": "Encounter.location[0].location.display",
                    "transforms": [{"op": "lookup", "table": "sites"}],
                }
            ],
            "tables": {"sites": {"W1": "West 1", "E2": "East 2"}},
        },
    )
    fhir = {"base_url": "http://127.0.0.1:9/fhir"}
    webhook = {"url": "http://127.0.0.1:9/hook", "body": "canonical"}
    if secrets:
        fhir |= {"bearer_token": "fhir-token", "headers": {"X-Api-Key": "api-key"}}
        webhook |= {
            "url": "http://hook-user:hook-pass@127.0.0.1:9/hook",
            "auth": {"type": "bearer", "token": "hook-token"},
        }
    factories.fhir_destination(mllp, "", name="fhir", config=fhir, route_when="true")
    Destination.objects.create(channel=mllp, name="hook", transport="webhook", config=webhook)
    Destination.objects.create(
        channel=mllp, name="lab", transport="mllp", config={"host": "127.0.0.1", "port": 40852}
    )
    Destination.objects.create(
        channel=mllp,
        name="archive",
        transport="file",
        config={"directory": "/tmp/hub-archive"},
        rate_limit_per_s=5,
        ordering_key="PID-3.1",
    )
    sample = ChannelSample.objects.create(
        channel=mllp, name="admission", raw=factories.adt_a01("CFG-1").decode()
    )
    samples.accept(sample)
    ChannelSample.objects.create(channel=mllp, name="not yet", raw=factories.oru_r01().decode())
    pickup = factories.channel(
        0,
        name="Lab drop",
        source_type="file",
        source_config={"directory": "/tmp/hub-drop", "glob": "*.hl7"},
    )
    factories.fhir_destination(pickup, "http://127.0.0.1:9/fhir", name="fhir")
    http = factories.channel(
        0,
        name="Web forms",
        source_type="http",
        source_config={"inbound": "json", "json_map": JSON_MAP},
    )
    ChannelSample.objects.create(
        channel=http,
        name="form",
        raw='{"mrn": "M1", "last": "Doe"}',
        content_type="application/vnd.hl7hub.custom+json",
    )
    return [mllp, pickup, http]


def import_text(text: str, *, publish: bool = True):
    return [apply_channel(p.given, None, publish=publish) for p in plan_document(text)]


def test_the_file_has_every_setting_in_a_fixed_order_and_no_runtime_state_or_secret():
    every_kind(secrets=True)
    text = export_yaml(Channel.objects.all())
    assert text.startswith("# Integration hub channels")
    doc = config_io.load(text)
    assert [c["name"] for c in doc["channels"]] == ["ADT demo", "Lab drop", "Web forms"]
    adt = doc["channels"][0]
    assert list(adt) == list(config_io.CHANNEL_KEYS)
    assert [d["name"] for d in adt["destinations"]] == ["archive", "fhir", "hook", "lab"]
    assert all(list(d) == list(config_io.DESTINATION_KEYS) for d in adt["destinations"])
    assert [s["name"] for s in adt["samples"]] == ["admission", "not yet"]
    for secret in ("key-pass", "fhir-token", "api-key", "hook-pass", "hook-token"):
        assert secret not in text
    fhir = adt["destinations"][1]["config"]
    assert fhir["bearer_token"] == SECRET_MARKER and fhir["headers"] == {"X-Api-Key": SECRET_MARKER}
    assert adt["destinations"][2]["config"]["url"] == f"http://{SECRET_MARKER}@127.0.0.1:9/hook"
    runtime = {"id", "paused", "archived_at", "created_at", "updated_at", "breaker_state"}
    assert not runtime & set(adt), "the channel's runtime state stays out"
    assert not runtime & set(adt["destinations"][0]), "the destination's too"
    assert adt["samples"][0]["accepted"]["outputs"], "the accepted output travels with the sample"
    assert adt["samples"][1]["accepted"] is None
    assert "raw: !segments |\n      MSH|^~\\&|EPIC|" in text, "HL7 v2: one segment a line"


def test_every_configuration_field_of_the_models_is_in_the_file():
    exported = set(config_io.CHANNEL_KEYS) - {"destinations", "samples"}
    assert exported == set(configuration(Channel, ()))
    assert set(config_io.DESTINATION_KEYS) == set(configuration(Destination, ("channel",)))


def test_export_import_export_gives_the_same_bytes_and_keeps_the_secrets():
    channels = every_kind(secrets=True)
    stored = {d.pk: open_config(d.transport, d.config) for d in Destination.objects.all()}
    text = export_yaml(channels)
    applied = import_text(text)
    assert all(not a.plan.changes for a in applied), [a.plan.changes for a in applied]
    assert export_yaml(Channel.objects.all()) == text
    for destination in Destination.objects.all():
        assert open_config(destination.transport, destination.config) == stored[destination.pk]
    adt = Channel.objects.get(name="ADT demo")
    assert opened_source_config("mllp", adt.source_config)["tls"]["key_password"] == "key-pass"


def test_a_file_builds_the_channels_again_byte_for_byte():
    text = export_yaml(every_kind(secrets=False))
    adt_sample = ChannelSample.objects.get(name="admission")
    raw, accepted = adt_sample.raw, adt_sample.accepted
    Channel.objects.all().delete()
    applied = import_text(text)
    assert [a.plan.new for a in applied] == [True, True, True]
    assert all(a.version.number == 1 and a.version.note == "imported from YAML" for a in applied)
    assert export_yaml(Channel.objects.all()) == text
    sample = ChannelSample.objects.get(name="admission")
    assert (sample.raw, sample.accepted) == (raw, accepted)
    assert "\r" in sample.raw and "\n" not in sample.raw


def test_a_changed_value_shows_in_the_diff_and_publishes_a_version():
    [adt, *_] = every_kind(secrets=True)
    adt.publish()
    text = export_yaml([adt]).replace("rate_limit_per_s: 5.0", "rate_limit_per_s: 7.5")
    text = text.replace("  - north\n", "")
    [plan] = plan_document(text)
    assert [str(c) for c in plan.changes] == [
        '~ channels[ADT demo].tags: ["adt", "north"] -> ["adt"]',
        "~ channels[ADT demo].destinations[archive].rate_limit_per_s: 5.0 -> 7.5",
    ]
    [applied] = import_text(text)
    assert applied.version.number == 2
    assert Destination.objects.get(name="archive").rate_limit_per_s == 7.5
    assert applied.version.snapshot["tags"] == ["adt"]


def test_destinations_and_samples_left_out_are_removed_and_a_new_secret_shows_as_changed():
    [adt, *_] = every_kind(secrets=True)
    doc = config_io.load(export_yaml([adt]))
    channel = doc["channels"][0]
    channel["destinations"] = [d for d in channel["destinations"] if d["name"] != "lab"]
    channel["destinations"][1]["config"]["bearer_token"] = "new-token"
    channel["samples"] = channel["samples"][:1]
    text = config_io.dump(doc)
    [plan] = plan_document(text)
    assert [str(c) for c in plan.changes] == [
        "- channels[ADT demo].destinations[lab]: deleted",
        "- channels[ADT demo].samples[not yet]: removed",
        "~ channels[ADT demo].destinations[fhir].config.bearer_token: "
        f'"{SECRET_MARKER}" -> "{SECRET_MARKER}"',
    ]
    assert plan.changes[-1].note == "secret changed"
    assert "new-token" not in str(plan.as_dict())
    import_text(text)
    assert not Destination.objects.filter(name="lab").exists()
    assert list(adt.samples.values_list("name", flat=True)) == ["admission"]
    fhir = Destination.objects.get(channel=adt, name="fhir")
    assert open_config("fhir_rest", fhir.config)["bearer_token"] == "new-token"


def refused(text: str) -> list[str]:
    before = export_yaml(Channel.objects.all())
    with pytest.raises(Refused) as caught:
        plan_document(text)
    with pytest.raises(Refused):  # one channel alone is refused the same way, writing nothing
        for doc in config_io.load_document(text):
            apply_channel(doc, None, publish=True)
    assert export_yaml(Channel.objects.all()) == before, "nothing was applied"
    return [str(p) for p in caught.value.problems]


def edited(change) -> str:
    doc = config_io.load(export_yaml(Channel.objects.all()))
    change({c["name"]: c for c in doc["channels"]})
    return config_io.dump(doc)


def test_an_unknown_key_is_refused_naming_the_channel_and_the_path():
    every_kind(secrets=True)

    def misspell(channels):
        channels["ADT demo"]["destinations"][1]["rout_when"] = "true"
        channels["Lab drop"]["source_config"]["globb"] = "*.txt"

    assert refused(edited(misspell)) == [
        "channels[ADT demo].destinations[fhir].rout_when: unknown key; did you mean route_when?",
        "channels[Lab drop].source_config.globb: unknown key; did you mean glob?",
    ]


def test_bad_settings_are_refused_each_with_its_path():
    every_kind(secrets=True)

    def spoil(channels):
        channels["ADT demo"]["source_config"]["port"] = 70000
        channels["ADT demo"]["destinations"][1]["config"]["base_url"] = "not a url"
        channels["ADT demo"]["destinations"][3]["timeout_s"] = "soon"
        channels["Lab drop"]["dedupe_window_s"] = -1

    problems = refused(edited(spoil))
    assert [p.split(":")[0] for p in problems] == [
        "channels[ADT demo].source_config.port",
        "channels[ADT demo].destinations[fhir].config.base_url",
        "channels[ADT demo].destinations[lab].timeout_s",
        "channels[Lab drop].dedupe_window_s",
    ]
    assert "less than or equal to 65535" in problems[0]


def test_a_field_rule_or_routing_condition_that_does_not_compile_is_refused():
    every_kind(secrets=True)

    def spoil(channels):
        channels["Web forms"]["source_config"]["json_map"]["rules"][1]["source"] = "%input.last."
        channels["ADT demo"]["destinations"][2]["route_when"] = "entry.resource.where("
        channels["ADT demo"]["mapping"]["rules"][0]["target"] = "Encounter.locaton"

    problems = refused(edited(spoil))
    mapping, *problems = problems
    assert mapping.startswith("channels[ADT demo].mapping: rule #1 ('site')"), mapping
    assert "locaton" in mapping
    assert problems[0].startswith("channels[ADT demo].destinations[hook].route_when: FHIRPath")
    assert problems[1].startswith(
        "channels[Web forms].source_config.json_map.rules[1].source: rule #2 ('family')"
    )
    assert "FHIRPath syntax error" in problems[1]


def test_what_a_fhir_destination_does_with_a_transaction_too_large_travels_in_the_file():
    [adt, *_] = every_kind(secrets=True)
    adt.publish()

    def to_fail(channels):
        channels["ADT demo"]["destinations"][1]["config"]["if_too_large"] = "fail"

    text = edited(to_fail)
    assert [str(c) for plan in plan_document(text) for c in plan.changes] == [
        '+ channels[ADT demo].destinations[fhir].config.if_too_large: added "fail"'
    ]
    import_text(text)
    fhir = Destination.objects.get(channel=adt, name="fhir")
    assert open_config("fhir_rest", fhir.config)["if_too_large"] == "fail"
    assert export_yaml(Channel.objects.all()) == text

    def to_split(channels):
        channels["ADT demo"]["destinations"][1]["config"]["if_too_large"] = "split"

    [problem] = refused(edited(to_split))
    assert problem.startswith("channels[ADT demo].destinations[fhir].config.if_too_large: ")
    assert "'batch' or 'fail'" in problem


def test_a_new_channel_with_only_the_marker_for_a_secret_is_refused():
    text = export_yaml(every_kind(secrets=True))
    Channel.objects.all().delete()
    problems = refused(text)
    assert "channels[ADT demo].source_config.tls.key_password: is the secret marker" in problems[0]
    assert any(
        p.startswith("channels[ADT demo].destinations[fhir].config.bearer_token") for p in problems
    )
    assert not Channel.objects.exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("version: 1\nchannels: [{name: a}]\nextra: 1\n", "extra: unknown key"),
        ("version: 2\nchannels: []\n", "version: must be 1"),
        ("version: 1\nchannels: [{name: a}, {name: a}]\n", "channels[a]: is named twice"),
        ("version: 1\nchannels:\n- &x {name: a}\n- *x\n", "aliases (*name) are not taken"),
        ("version: 1\nversion: 1\nchannels: []\n", "key 'version' is given twice"),
        ("version: 1\nchannels: [{name: a\n", "not readable as YAML"),
        ("- 1\n", "must be a mapping with version and channels"),
        ("version: 1\nchannels: [{name: a, max_message_bytes: .nan}]\n", "finite number"),
        ('version: 1\nchannels: [{name: "a\\0b"}]\n', "channels[a\x00b].name: holds a NUL"),
        (
            'version: 1\nchannels: [{name: a, source_type: file, source_config: {directory: "\\0"}}]',
            "channels[a].source_config.directory: holds a NUL",
        ),
    ],
)
def test_a_file_that_is_not_a_channels_file_is_refused_saying_why(text, says):
    with pytest.raises(Refused) as caught:
        plan_document(text)
    assert says in str(caught.value)


def test_a_new_channel_takes_a_secret_written_in_the_file_sealed():
    channel = factories.channel(40861, name="Fresh")
    factories.fhir_destination(
        channel, "", name="fhir", config={"base_url": "http://127.0.0.1:9/f", "bearer_token": "t"}
    )
    text = export_yaml([channel]).replace(f"bearer_token: {SECRET_MARKER}", "bearer_token: s3cret")
    Channel.objects.all().delete()
    [applied] = import_text(text)
    fhir = applied.channel.destinations.get()
    assert fhir.config["bearer_token"] != "s3cret", "sealed at rest"
    assert open_config("fhir_rest", fhir.config)["bearer_token"] == "s3cret"
    assert "s3cret" not in export_yaml([applied.channel])


def test_a_destination_left_out_that_has_deliveries_is_disabled_not_deleted():
    channel = factories.channel(40862, name="Busy")
    kept = factories.fhir_destination(channel, "http://127.0.0.1:9/f", name="kept")
    gone = factories.fhir_destination(channel, "http://127.0.0.1:9/f", name="gone")
    message = Message.objects.create(channel=channel, raw=factories.adt_a01("CFG-2"))
    Delivery.objects.create(message=message, destination=gone)
    doc = config_io.load(export_yaml([channel]))
    doc["channels"][0]["destinations"] = [
        d for d in doc["channels"][0]["destinations"] if d["name"] == "kept"
    ]
    [plan] = plan_document(config_io.dump(doc))
    assert [str(c) for c in plan.changes] == [
        "- channels[Busy].destinations[gone]: disabled (its deliveries keep it)"
    ]
    import_text(config_io.dump(doc))
    gone.refresh_from_db()
    assert gone.enabled is False and kept.enabled is True
    [again] = plan_document(config_io.dump(doc))
    assert again.changes == [], "disabled already: importing the file again changes nothing"


def test_without_publish_a_file_becomes_the_channels_draft_and_runs_once_published():
    from channels_app import drafts

    [mllp, *_] = every_kind(secrets=True)
    mllp.publish()

    def change(channels):
        channels["ADT demo"]["route_filter"] = "%messageCode = 'ORU'"
        channels["ADT demo"]["destinations"][1]["timeout_s"] = 7

    [applied, *_] = [a for a in import_text(edited(change), publish=False) if a.plan.changes]
    assert applied.version is None
    mllp.refresh_from_db()
    assert mllp.route_filter == "%messageCode = 'ADT'"  # what runs is untouched
    draft = drafts.draft_of(mllp)
    assert draft["route_filter"] == "%messageCode = 'ORU'"
    assert {d["name"]: d["timeout_s"] for d in draft["destinations"]}["fhir"] == 7
    drafts.publish_draft(mllp, None, "reviewed")
    mllp.refresh_from_db()
    assert mllp.route_filter == "%messageCode = 'ORU'"
    assert mllp.destinations.get(name="fhir").timeout_s == 7
    assert open_config("fhir_rest", mllp.destinations.get(name="fhir").config)["bearer_token"] == (
        "fhir-token"
    )  # the secret the file shows as the marker is kept


def test_a_channel_built_from_its_export_passes_its_own_suite():
    adt = every_kind(secrets=False)[0]
    for sample in adt.samples.all():
        samples.accept(sample)
    text = export_yaml([adt]).replace("ADT demo", "ADT copy").replace("40851", "40861")
    import_text(text)
    copy = Channel.objects.get(name="ADT copy")
    assert not {d.pk for d in copy.destinations.all()} & {d.pk for d in adt.destinations.all()}
    outcomes = samples.run_suite(copy)
    assert [(o.sample.name, o.status, o.diff) for o in outcomes] == [
        ("admission", samples.PASSED, ""),
        ("not yet", samples.PASSED, ""),
    ]


def test_an_output_accepted_with_destination_ids_is_read_by_destination_name():
    adt = every_kind(secrets=False)[0]
    sample = adt.samples.get(name="admission")
    archive = adt.destinations.get(name="archive")
    old = samples.run_sample(sample).as_dict()  # as accepted outputs were kept before
    del old["parse_tree"], old["content_type"]
    assert all(isinstance(d["destination"], int) for d in old["routing"])
    target = old["outputs"]["archive"]["target"]
    old["outputs"]["archive"]["target"] = target.replace(
        "message-dry-run", f"message-dry-run-{archive.pk}"
    )
    sample.accepted_sealed = seal_json(old)
    sample.save()
    assert samples.check_sample(sample).status == samples.PASSED
    exported = config_io.load(export_yaml([adt]))["channels"][0]["samples"][0]["accepted"]
    assert [set(d) for d in exported["routing"]] == [
        {"destination_name", "routed", "reason"}
    ] * len(exported["routing"])
    assert exported["outputs"]["archive"]["target"] == target
