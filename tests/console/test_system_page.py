"""The System page tells admins whether data is sealed at rest and whom the app connects as;
an external database without a key refuses to start unless clear storage is asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def test_admins_see_encryption_on_and_the_connected_role(client, hub_admin_user, settings):
    settings.HUB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    client.force_login(hub_admin_user)
    page = client.get(reverse("system")).content.decode()
    assert (
        'id="encryption-state">on<' in page
        and 'id="encryption-source">HUB_ENCRYPTION_KEYS<' in page
    )
    # The suite connects as a superuser (CI's postgres): the page says what that allows.
    assert 'id="role-state">can undo the audit<' in page and "is a superuser" in page
    assert 'id="role-superuser">yes<' in page
    assert f'href="{reverse("system")}">System</a>' in page  # in the navigation


def test_storing_in_clear_shows_as_off(client, hub_admin_user, settings):
    settings.HUB_ENCRYPTION_KEYS = []
    client.force_login(hub_admin_user)
    page = client.get(reverse("system")).content.decode()
    assert 'id="encryption-state">off<' in page and "HUB_STORE_IN_CLEAR=true" in page


def test_others_do_not_see_the_link_or_the_page(client, analyst_user):
    client.force_login(analyst_user)
    assert client.get(reverse("system")).status_code == 403
    assert f'href="{reverse("system")}"' not in client.get(reverse("messages")).content.decode()


def _settings_in_a_new_process(**env):
    """Load the settings in a fresh interpreter, the way any hub process starts."""
    clean = {k: v for k, v in os.environ.items() if k not in ("HUB_ENCRYPTION_KEYS",)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings;"
            " print(len(settings.HUB_ENCRYPTION_KEYS))",
        ],
        env={**clean, "DJANGO_SETTINGS_MODULE": "console.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_external_database_without_a_key_refuses_to_start():
    started = _settings_in_a_new_process()
    assert started.returncode != 0
    assert "HUB_ENCRYPTION_KEYS is not set" in started.stderr
    assert "HUB_STORE_IN_CLEAR=true" in started.stderr


def test_storing_in_clear_must_be_asked_for():
    started = _settings_in_a_new_process(HUB_STORE_IN_CLEAR="true")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "0"


def test_a_key_from_the_environment_is_used():
    started = _settings_in_a_new_process(HUB_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "1"


def _heartbeat(role, pid, beat_s_ago=0, host="clinic-box", **fields):
    from datetime import timedelta

    from django.utils import timezone

    from channels_app.models import ProcessHeartbeat

    now = timezone.now()
    return ProcessHeartbeat.objects.create(
        role=role,
        host=host,
        pid=pid,
        started_at=now - timedelta(hours=2),
        beat_at=now - timedelta(seconds=beat_s_ago),
        **fields,
    )


def test_admins_see_every_process_with_its_heartbeat(client, hub_admin_user, settings):
    settings.HUB = {**settings.HUB, "HEARTBEAT_EVERY_S": 10}
    _heartbeat("listeners", 4242, restarts=2, sockets=["127.0.0.1:2575", "0.0.0.0:2576"])
    _heartbeat("worker", 4243)
    _heartbeat("beat", 4244, beat_s_ago=600)
    client.force_login(hub_admin_user)
    page = client.get(reverse("system")).content.decode()
    rows = page.split('data-role="')[1:]
    assert [row.split('"')[0] for row in rows] == ["worker", "beat", "listeners"]
    worker, beat, listeners = rows
    assert "running" in worker and "silent" in beat  # ten minutes without a beat
    assert "<code>4242</code>" in listeners and ">2</span>" in listeners
    assert "127.0.0.1:2575" in listeners and "0.0.0.0:2576" in listeners


@pytest.mark.django_db(transaction=True)  # the heartbeat writes from its own thread
def test_a_heartbeat_is_written_while_the_process_lives_and_removed_when_it_stops(settings):
    import socket

    from channels_app.models import ProcessHeartbeat
    from channels_app.process_heartbeat import Heartbeat
    from tests.support import wait_for

    settings.HUB = {**settings.HUB, "HEARTBEAT_EVERY_S": 1}
    # A silent listener on this host is the one this process replaces; another host's stays.
    _heartbeat("listeners", 1, beat_s_ago=60, host=socket.gethostname())
    _heartbeat("listeners", 2, beat_s_ago=60)
    beat = Heartbeat("listeners", ["127.0.0.1:2575"]).start()
    try:
        wait_for(lambda: ProcessHeartbeat.objects.filter(pid=os.getpid()).exists())
        row = ProcessHeartbeat.objects.get(pid=os.getpid())
        assert (row.role, row.sockets, row.restarts) == ("listeners", ["127.0.0.1:2575"], 0)
        assert sorted(ProcessHeartbeat.objects.values_list("pid", flat=True)) == [2, os.getpid()]
        first = row.beat_at
        wait_for(lambda: ProcessHeartbeat.objects.get(pid=os.getpid()).beat_at > first, timeout=10)
    finally:
        beat.stop()
    assert not ProcessHeartbeat.objects.filter(pid=os.getpid()).exists()
