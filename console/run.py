"""`make run`: start every process of the hub on one machine, stop them all on Ctrl-C.

web (daphne) · celery worker · celery beat · MLLP listeners; plus embedded PostgreSQL and Redis
when DATABASE_URL / REDIS_URL are unset. Production runs each process on its own instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
    commands = {
        # daphne, with its access log scrubbed of tokens (console/web.py).
        "web": [py, "-m", "console.web", "-b", host, "-p", port, "console.asgi:application"],
        # Processing is CPU-bound (processes); delivery waits on the network (threads).
        "worker": [
            py,
            "-m",
            "celery",
            "-A",
            "console",
            "worker",
            "-n",
            "process@%h",
            "-Q",
            "process,default",
            "--concurrency",
            os.environ.get("WORKER_CONCURRENCY", "2"),
            "-l",
            "warning",
        ],
        "deliver": [
            py,
            "-m",
            "celery",
            "-A",
            "console",
            "worker",
            "-n",
            "deliver@%h",
            "-Q",
            "deliver",
            "-P",
            "threads",
            "--concurrency",
            os.environ.get("DELIVER_THREADS", "8"),
            "-l",
            "warning",
        ],
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
    procs = {name: subprocess.Popen(cmd, env=env, cwd=ROOT) for name, cmd in commands.items()}
    user = os.environ.get("DEMO_ADMIN_USER", "admin")
    password = os.environ.get("DEMO_ADMIN_PASSWORD", "hub-demo-admin-2575")
    print(
        f"\n  Console:   http://{host}:{port}/   (sign in as {user} / {password})\n"
        f"  MLLP demo: 127.0.0.1:{os.environ.get('DEMO_MLLP_PORT', '2575')}   Ctrl-C stops everything.\n",
        flush=True,
    )
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the rest", flush=True)
                stopping, exit_code = True, 1
        time.sleep(0.3)
    _stop_all(procs)
    if started_embedded:
        embedded.stop_redis()
        embedded.stop_postgres()
    print("stopped.", flush=True)
    return exit_code


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


def _stop_all(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
