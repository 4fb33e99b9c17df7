"""The suite's environment, set before Django reads its settings (loaded with `pytest -p`).

Every run seals at rest, as production must: without HUB_ENCRYPTION_KEYS a key is made for this
run (processes the tests start inherit it). Without DATABASE_URL the suite uses the embedded
server as its superuser, as CI uses its PostgreSQL's: the suite creates databases and roles.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet

# Processes the suite starts write no heartbeat unless a test asks for them.
os.environ.setdefault("HEARTBEAT_EVERY_S", "0")
if not os.environ.get("HUB_ENCRYPTION_KEYS"):
    os.environ["HUB_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
if not os.environ.get("DATABASE_URL"):
    from console import embedded

    os.environ["DATABASE_URL"] = embedded.postgres_url()
