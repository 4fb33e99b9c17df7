"""From a shell: ``export_channels`` writes the YAML file, ``import_channels`` shows its changes,
applies them (publishing with --publish) or, for a refused file, says why on stderr with a
non-zero exit status and applies nothing. Both audit as a shell actor. Run in-process
(call_command) and as the separate processes a git workflow runs."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from channels_app.config_io import export_yaml
from channels_app.models import Channel, Destination
from console.models import AuditEvent
from tests import factories
from tests.support import REPO, database_url_for_processes


@pytest.fixture
def channel():
    channel = factories.channel(40871, name="ADT demo", route_filter="")
    factories.fhir_destination(
        channel,
        "http://127.0.0.1:9/fhir",
        name="fhir",
        config={"base_url": "http://127.0.0.1:9/fhir", "bearer_token": "tok"},
    )
    return channel


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_export_writes_the_file_and_is_audited_as_the_shell(channel):
    factories.channel(40872, name="Other")
    out, _ = run("export_channels", "--channel", "ADT demo")
    assert out == export_yaml([channel])
    event = AuditEvent.objects.get(action="channels.exported")
    assert event.actor is None and event.actor_name == "shell:export_channels"
    assert event.detail["channels"] == ["ADT demo"] and event.target == f"channel:{channel.pk}"
    everything, _ = run("export_channels")
    assert "name: Other" in everything and "name: ADT demo" in everything


@pytest.mark.django_db
def test_export_of_an_unknown_channel_fails():
    with pytest.raises(CommandError, match="no channel named 'Nope'"):
        run("export_channels", "--channel", "Nope")


@pytest.mark.django_db
def test_dry_run_shows_the_changes_and_applies_nothing(channel, tmp_path):
    file = tmp_path / "adt.yaml"
    file.write_text(export_yaml([channel]).replace("timeout_s: 5.0", "timeout_s: 9.0"))
    out, _ = run("import_channels", str(file), "--dry-run")
    assert "~ channels[ADT demo].destinations[fhir].timeout_s: 5.0 -> 9.0" in out
    assert "dry run: nothing applied" in out
    assert Destination.objects.get(name="fhir").timeout_s == 5.0
    assert not AuditEvent.objects.filter(action="channel.imported").exists()


@pytest.mark.django_db
def test_publish_applies_records_a_version_and_audits(channel, tmp_path):
    file = tmp_path / "adt.yaml"
    file.write_text(export_yaml([channel]).replace("route_filter: ''", "route_filter: 'true'"))
    out, _ = run("import_channels", str(file), "--publish")
    assert "applied ADT demo: published as version 1" in out
    channel.refresh_from_db()
    assert channel.route_filter == "true"
    assert channel.current_version().note == "imported from YAML"
    event = AuditEvent.objects.get(action="channel.imported")
    assert event.actor_name == "shell:import_channels" and event.detail["version"] == 1
    assert event.detail["changes"] == [
        {
            "path": "channels[ADT demo].route_filter",
            "kind": "changed",
            "before": "",
            "after": "true",
        }
    ]


@pytest.mark.django_db
def test_without_publish_the_file_becomes_the_channels_draft(channel, tmp_path):
    from channels_app import drafts

    file = tmp_path / "adt.yaml"
    file.write_text(export_yaml([channel]).replace("route_filter: ''", "route_filter: 'true'"))
    out, _ = run("import_channels", str(file))
    assert "saved as its draft" in out
    channel.refresh_from_db()
    assert channel.route_filter == "" and channel.current_version() is None
    assert drafts.draft_of(channel)["route_filter"] == "true"


@pytest.mark.django_db
def test_a_refused_file_fails_with_the_reasons_and_applies_nothing(channel, tmp_path):
    file = tmp_path / "adt.yaml"
    file.write_text(export_yaml([channel]).replace("route_filter: ''", "route_filter: 'x.('"))
    err = io.StringIO()
    with pytest.raises(CommandError, match="refused .1 problem.s..; nothing applied"):
        call_command("import_channels", str(file), "--publish", stdout=io.StringIO(), stderr=err)
    assert err.getvalue().startswith("refused: channels[ADT demo].route_filter: FHIRPath")
    channel.refresh_from_db()
    assert channel.route_filter == "" and channel.current_version() is None


def manage(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url_for_processes()}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
def test_the_commands_as_a_git_workflow_runs_them(channel, tmp_path):
    exported = manage("export_channels", "--channel", "ADT demo")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == export_yaml([channel])

    file = tmp_path / "adt.yaml"
    file.write_text(
        exported.stdout.replace("ADT demo\n  description: ''", "ADT demo\n  descriptio: ''")
    )
    refused = manage("import_channels", str(file), "--publish")
    assert refused.returncode == 1
    assert (
        "refused: channels[ADT demo].descriptio: unknown key; did you mean description?"
        in refused.stderr
    )
    assert refused.stdout == ""

    changed = exported.stdout.replace("max_attempts: 8", "max_attempts: 3")
    applied = manage("import_channels", "-", "--publish", stdin=changed)
    assert applied.returncode == 0, applied.stderr
    assert "~ channels[ADT demo].destinations[fhir].max_attempts: 8 -> 3" in applied.stdout
    assert Destination.objects.get(name="fhir").max_attempts == 3
    assert Channel.objects.get(name="ADT demo").current_version().number == 1
    again = manage("export_channels", "--channel", "ADT demo")
    assert again.stdout == changed
