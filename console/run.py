"""`make run`: start every process of the hub on one machine, keep them running, stop them all on
Ctrl-C or SIGTERM.

web (daphne) · celery worker · celery beat · MLLP listeners; plus embedded PostgreSQL and Redis
when DATABASE_URL / REDIS_URL are unset. Production runs each process on its own instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from console import embedded
from console.env import env_bool

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    started_embedded = _ensure_services()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    py = sys.executable
    manage = [py, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], check=True, env=env, cwd=ROOT)
    subprocess.run([*manage, "seed_demo"], check=True, env=env, cwd=ROOT)
    host, port = os.environ.get("WEB_HOST", "127.0.0.1"), os.environ.get("WEB_PORT", "8000")
    embedded.VAR_DIR.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(_commands(py, manage, host, port), env)
    user = os.environ.get("DEMO_ADMIN_USER", "admin")
    password = os.environ.get("DEMO_ADMIN_PASSWORD", "hub-demo-admin-2575")
    supervisor.start_all()
    print(
        f"\n  Console:   http://{host}:{port}/   (sign in as {user} / {password})\n"
        f"  MLLP demo: 127.0.0.1:{os.environ.get('DEMO_MLLP_PORT', '2575')}   Ctrl-C stops everything.\n",
        flush=True,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.wait(0.3):
        supervisor.tend()
    print("[runner] stopping every process...", flush=True)
    stopped = supervisor.stop_all()
    _forget_heartbeats(stopped)
    if started_embedded:
        embedded.stop_redis()
        embedded.stop_postgres()
    print("stopped.", flush=True)
    return 0


def _commands(py: str, manage: list[str], host: str, port: str) -> dict[str, list[str]]:
    """The hub's processes, by the role each reports on the System page."""
    return {
        # daphne, with its access log scrubbed of tokens (console/web.py).
        "web": [py, "-m", "console.web", "-b", host, "-p", port, "console.asgi:application"],
        **worker_commands(py),
        "beat": [
            py,
            "-m",
            "celery",
            "-A",
            "console",
            "beat",
            "-l",
            "warning",
            "-s",
            str(embedded.VAR_DIR / "celerybeat-schedule"),
        ],
        "listeners": [*manage, "run_listeners"],
    }


def worker_commands(py: str) -> dict[str, list[str]]:
    """The two Celery workers (``make bench`` runs them with the same flags)."""
    celery = [py, "-m", "celery", "-A", "console", "worker", "-l", "warning"]
    return {
        # Processing is CPU-bound (processes); delivery waits on the network (threads).
        "worker": [
            *celery,
            *("-n", "process@%h", "-Q", "process,default"),
            *("--concurrency", os.environ.get("WORKER_CONCURRENCY", "2")),
        ],
        "deliver": [
            *celery,
            *("-n", "deliver@%h", "-Q", "deliver", "-P", "threads"),
            *("--concurrency", os.environ.get("DELIVER_THREADS", "8")),
        ],
    }


def _ensure_services() -> bool:
    """Start the embedded servers this machine needs. The processes started next are not told
    their URLs: each finds the same servers under var/, as a `manage.py` run beside them does."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return False
    if not os.environ.get("DATABASE_URL"):
        embedded.postgres_urls()
        print(
            f"embedded PostgreSQL: {embedded.VAR_DIR / 'pg'} (the app connects as "
            f"{embedded.APP_ROLE}; migrations run as {embedded.OWNER_ROLE})",
            flush=True,
        )
        if not os.environ.get("HUB_ENCRYPTION_KEYS") and not env_bool("HUB_STORE_IN_CLEAR", False):
            embedded.encryption_key()
            print(f"encryption at rest: key kept in {embedded.KEY_FILE}", flush=True)
    if not os.environ.get("REDIS_URL"):
        print(f"embedded Redis: {embedded.redis_url()}", flush=True)
    return True


class Supervisor:
    """Keeps every process running: one that exits is started again after a backoff that grows
    while it keeps failing, and the others are never touched. Only stop_all() ends them.

    Each process runs in its own session, so Ctrl-C reaches the runner alone (it stops the
    processes in order) and a dead process's leftovers (prefork children) can be ended with it.
    """

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str]) -> None:
        self.commands = commands
        self.env = env
        self.backoff_max_s = float(os.environ.get("RESTART_BACKOFF_MAX_S", "30"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.restarts: dict[str, int] = dict.fromkeys(commands, 0)
        self.failures: dict[str, int] = dict.fromkeys(commands, 0)  # in a row, for the backoff
        self.due: dict[str, float] = {}  # role -> when to start it again
        self.dead: dict[str, int] = {}  # role -> the pid that died, which its successor replaces

    def start_all(self) -> None:
        for role in self.commands:
            self._start(role)

    def tend(self) -> None:
        """Notice what exited, start again what is due."""
        now = time.monotonic()
        for role, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self._exited(role, proc, now)
        for role, when in list(self.due.items()):
            if now >= when:
                del self.due[role]
                self.restarts[role] += 1
                self._start(role)

    def stop_all(self, timeout_s: float = 15) -> list[int]:
        """Stop every process; the pids of those that were running, and of any that died and
        was not started again."""
        self.due.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for role, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[runner] {role} did not stop in {timeout_s:.0f} s: killed", flush=True)
            _end_group(proc)
        return [proc.pid for proc in self.procs.values()] + list(self.dead.values())

    def _start(self, role: str) -> None:
        env = {
            **self.env,
            "HUB_PROCESS_ROLE": role,
            "HUB_PROCESS_RESTARTS": str(self.restarts[role]),
        }
        if role in self.dead:  # its heartbeat row goes when the successor's first beat comes
            env["HUB_PROCESS_REPLACES"] = str(self.dead.pop(role))
        proc = subprocess.Popen(self.commands[role], env=env, cwd=ROOT, start_new_session=True)
        self.procs[role] = proc
        self.started_at[role] = time.monotonic()
        if self.restarts[role]:
            print(
                f"[runner] {role} started again (pid {proc.pid}, restart {self.restarts[role]})",
                flush=True,
            )

    def _exited(self, role: str, proc: subprocess.Popen, now: float) -> None:
        del self.procs[role]
        self.dead[role] = proc.pid
        _end_group(proc)
        # A process that ran a while before dying starts over at the shortest backoff.
        ran_s = now - self.started_at[role]
        self.failures[role] = 1 if ran_s > 60 else self.failures[role] + 1
        delay = min(self.backoff_max_s, 2.0 ** min(self.failures[role] - 1, 16))
        self.due[role] = now + delay
        print(
            f"[runner] {role} (pid {proc.pid}) {_how_it_ended(proc.returncode)} after {ran_s:.0f} s;"
            f" starting it again in {delay:.0f} s. The other processes keep running.",
            flush=True,
        )


def _forget_heartbeats(pids: list[int]) -> None:
    """The processes stopped on purpose leave no heartbeat row, however they ended: a process
    cannot always remove its own (daphne may exit on SIGTERM without running atexit, and one
    killed after the grace period never can)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    try:
        import django

        django.setup()
        from channels_app import process_heartbeat

        process_heartbeat.forget(pids)
    except Exception as exc:  # noqa: BLE001 - stopping goes on; the rows only show "silent"
        print(f"[runner] heartbeat rows of the stopped processes not removed: {exc}", flush=True)


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _end_group(proc: subprocess.Popen) -> None:
    """Whatever the process left behind in its session (pool children) goes with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


if __name__ == "__main__":
    sys.exit(main())
