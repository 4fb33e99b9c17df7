"""Every hub process says it lives: a row in ProcessHeartbeat, refreshed from a daemon thread.

The runner (console/run.py) tells each process its role and how often that role was restarted
through the environment; a process started by hand or by systemd names its role itself.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

log = logging.getLogger(__name__)

ROLE_ENV = "HUB_PROCESS_ROLE"
RESTARTS_ENV = "HUB_PROCESS_RESTARTS"
REPLACES_ENV = "HUB_PROCESS_REPLACES"  # the pid of the dead process this one takes over from
# A row is forgotten once it has been silent this long.
FORGET_AFTER = timedelta(days=1)


def every_s() -> int:
    return settings.HUB["HEARTBEAT_EVERY_S"]


def is_silent(beat_at: datetime, now: datetime | None = None) -> bool:
    """Three missed beats: the process is gone or stuck."""
    return (now or timezone.now()) - beat_at > timedelta(seconds=3 * max(every_s(), 1))


class Heartbeat:
    def __init__(self, role: str, sockets: Sequence[str] = ()) -> None:
        self.role = os.environ.get(ROLE_ENV) or role
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = timezone.now()
        self.restarts = int(os.environ.get(RESTARTS_ENV) or 0)
        self.replaces = int(os.environ.get(REPLACES_ENV) or 0)
        self.sockets = list(sockets)
        self._stopped = threading.Event()
        # A beat in flight when the process stops must land before the row is removed, or it
        # would write the row back after the removal.
        self._writing = threading.Lock()

    def start(self) -> Heartbeat:
        threading.Thread(target=self._run, name="heartbeat", daemon=True).start()
        atexit.register(self.stop)
        return self

    def hold(self, sockets: Sequence[str]) -> None:
        """What the process holds now (a listener's bound sockets); written with the next beat."""
        self.sockets = list(sockets)

    def stop(self) -> None:
        """A clean exit leaves no row behind: only a process that died keeps one, silent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        atexit.unregister(self.stop)
        self._quietly(self._forget_self)

    def _run(self) -> None:
        self._quietly(self._forget_replaced)
        while not self._stopped.is_set():
            self._quietly(self._beat)
            self._stopped.wait(every_s())

    def _quietly(self, action) -> None:
        # Connect for each beat: a prefork worker forks children from this process, and a
        # connection held across a fork would be shared with them.
        from django.db import DatabaseError

        try:
            action()
        except DatabaseError as exc:
            log.warning("heartbeat of %s not written: %s", self.role, exc)
        finally:
            connection.close()

    def _beat(self) -> None:
        with self._writing:
            if not self._stopped.is_set():
                self._write_beat()

    def _write_beat(self) -> None:
        from channels_app.models import ProcessHeartbeat

        now = timezone.now()
        ProcessHeartbeat.objects.update_or_create(
            host=self.host,
            pid=self.pid,
            defaults={
                "role": self.role,
                "started_at": self.started_at,
                "beat_at": now,
                "restarts": self.restarts,
                "sockets": self.sockets,
            },
        )
        ProcessHeartbeat.objects.filter(beat_at__lt=now - FORGET_AFTER).delete()

    def _forget_replaced(self) -> None:
        """The processes this one replaces: the one the runner says died (however recently it
        beat), and any silent one of this role on this host."""
        from django.db.models import Q

        from channels_app.models import ProcessHeartbeat

        quiet_since = timezone.now() - timedelta(seconds=3 * max(every_s(), 1))
        ProcessHeartbeat.objects.filter(host=self.host).filter(
            Q(role=self.role, beat_at__lt=quiet_since) | Q(pid=self.replaces)
        ).exclude(pid=self.pid).delete()

    def _forget_self(self) -> None:
        from channels_app.models import ProcessHeartbeat

        with self._writing:
            ProcessHeartbeat.objects.filter(host=self.host, pid=self.pid).delete()


def forget(pids: Sequence[int]) -> None:
    """Remove the rows of these processes of this host (a runner's children it stopped)."""
    from channels_app.models import ProcessHeartbeat

    ProcessHeartbeat.objects.filter(host=socket.gethostname(), pid__in=list(pids)).delete()


def start(role: str, sockets: Sequence[str] = ()) -> Heartbeat | None:
    if every_s() <= 0:
        return None
    return Heartbeat(role, sockets).start()
