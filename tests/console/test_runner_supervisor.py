"""The runner's supervisor, with real processes: one that keeps failing is started again with a
growing backoff and says so; the one beside it is never touched; stop_all ends both."""

from __future__ import annotations

import sys

from console.run import Supervisor
from tests.support import wait_for


def test_a_failing_process_comes_back_with_backoff_and_the_other_keeps_running(monkeypatch, capsys):
    monkeypatch.setenv("RESTART_BACKOFF_MAX_S", "2")
    supervisor = Supervisor(
        {
            "steady": [sys.executable, "-c", "import time; time.sleep(600)"],
            "flaky": [
                sys.executable,
                "-c",
                "import os, sys; sys.exit(int(os.environ['HUB_PROCESS_RESTARTS']) + 3)",
            ],
        },
        env={"PATH": "/usr/bin:/bin"},
    )
    supervisor.start_all()
    steady = supervisor.procs["steady"]
    try:
        wait_for(lambda: supervisor.tend() or supervisor.restarts["flaky"] >= 3, timeout=60)
    finally:
        supervisor.stop_all(timeout_s=5)
    said = capsys.readouterr().out
    # Each start is told how often its role was restarted (it exits with that + 3).
    for code in (3, 4, 5):
        assert f"exited with code {code}" in said
    assert "starting it again in 1 s" in said and "starting it again in 2 s" in said
    assert "[runner] flaky started again" in said and "restart 3)" in said
    assert "steady" not in said  # never touched while it ran
    assert supervisor.procs["steady"] is steady and steady.returncode is not None  # stopped
