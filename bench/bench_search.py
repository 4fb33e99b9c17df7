"""Search among a million stored messages, through the API path (DRF, MessageFilter, outcome,
serializer, pagination) as a viewer calls ``GET /api/v1/messages/?q=``.

Generates BENCH_SEARCH_MESSAGES (default 1,000,000) messages with COPY in a throwaway database
(<name>_search_bench): 200,000 patients (a few messages each), names drawn from a few hundred
family and given names (accents included), orders on results, one delivery each (1% failed),
about nine business keys per message. Then times a key lookup (an MRN, an order number) and a
name-prefix search (three letters, and family + given). Target: p95 under 200 ms.

Printed: p50/p95 in ms per search kind. Last line: ``BENCH {json}``.

    python -m bench.bench_search
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = int(os.environ.get("BENCH_SEARCH_MESSAGES", 1_000_000))
PATIENTS = max(MESSAGES // 5, 1)
SAMPLES = int(os.environ.get("BENCH_SEARCH_SAMPLES", 200))
# Search the messages the previous run made, when they are there (to measure again quickly).
REUSE = os.environ.get("BENCH_SEARCH_REUSE") == "1"
FAMILIES = [
    f"{stem}{end}"
    for stem in (
        "Sm",
        "John",
        "Will",
        "Br",
        "Jon",
        "Garc",
        "Mill",
        "Dav",
        "Rodr",
        "Mart",
        "Hern",
        "Lóp",
        "Gonz",
        "Wils",
        "And",
        "Thom",
        "Tayl",
        "Moor",
        "Jacks",
        "Müll",
        "Lee",
        "Pér",
        "Thomps",
        "Whit",
        "Harr",
        "Sánch",
        "Cl",
        "Ramír",
        "Lew",
        "Robins",
    )
    for end in (
        "ith",
        "son",
        "iams",
        "own",
        "es",
        "ia",
        "er",
        "is",
        "iguez",
        "inez",
        "andez",
        "ez",
        "alez",
        "on",
        "erson",
        "as",
        "or",
        "e",
        "on",
        "ler",
    )
]
GIVENS = [
    f"{stem}{end}"
    for stem in ("Ja", "Mar", "Jo", "Ro", "Li", "Da", "Zo", "Élo", "Ann", "Be", "Ka", "Ch")
    for end in ("ne", "y", "hn", "bert", "nda", "vid", "ë", "ïse", "a", "th", "te", "ris")
]
TYPES = ["ADT^A01", "ADT^A08", "ADT^A03", "ORU^R01", "ORU^R01", "ORM^O01"]


def bench_url() -> str:
    if not os.environ.get("DATABASE_URL"):
        from console import embedded

        os.environ["DATABASE_URL"] = embedded.postgres_url()
    db = urlparse(os.environ["DATABASE_URL"])
    name = (db.path.lstrip("/") or "postgres") + "_search_bench"
    with psycopg.connect(urlunparse(db._replace(path="/postgres")), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not (REUSE and found):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(db._replace(path=f"/{name}"))


def patient(n: int) -> tuple[str, str, str, str]:
    rng = random.Random(n)
    return (f"MRN{n:07d}", rng.choice(FAMILIES), rng.choice(GIVENS), f"19{rng.randint(30, 99)}0101")


def generate(url: str, channel: int, destination: int) -> float:
    """COPY the messages, their keys and deliveries; returns the seconds it took."""
    from adapters.keys import normalise

    started = time.perf_counter()
    rng = random.Random(13)
    begin = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no FK trigger per copied row
        cur.execute("DROP INDEX messagekey_search, messagekey_of_message")  # made after COPY
        columns = (
            "id, channel_id, received_at, processed_at, status, message_type, control_id, "
            "sending_application, sending_facility, remote_addr, raw, size, issues, routing, "
            "error_stage, error_class, error_path, error_detail, sweep_after, content_type"
        )
        with cur.copy(f"COPY channels_app_message ({columns}) FROM STDIN") as messages:
            for i in range(1, MESSAGES + 1):
                at = begin + timedelta(seconds=i * 7)
                kind = TYPES[i % len(TYPES)]
                messages.write_row(
                    (
                        i,
                        channel,
                        at,
                        at,
                        "PROCESSED",
                        kind,
                        f"MSG{i:09d}",
                        "EPIC",
                        "HOSP",
                        "10.0.0.1",
                        b"MSH|^~\\&|EPIC|HOSP",
                        200,
                        "[]",
                        "[]",
                        "",
                        "",
                        "",
                        "",
                        at,
                        "x-application/hl7-v2+er7",
                    )
                )
        with cur.copy(
            "COPY channels_app_messagekey (message_id, kind, value, authority, normalised) "
            "FROM STDIN"
        ) as keys:
            for i in range(1, MESSAGES + 1):
                mrn, family, given, born = patient(rng.randrange(PATIENTS))
                rows = [
                    ("control_id", f"MSG{i:09d}", ""),
                    ("identifier", mrn, "HOSP"),
                    ("family", family, ""),
                    ("given", given, ""),
                    ("birth_date", born, ""),
                    ("visit", f"V{i // 3:08d}", ""),
                    ("sending_application", "EPIC", ""),
                    ("sending_facility", "HOSP", ""),
                ]
                if TYPES[i % len(TYPES)].startswith("OR"):
                    rows += [("placer_order", f"ORD{i:08d}", ""), ("filler_order", f"F{i:08d}", "")]
                for kind, value, authority in rows:
                    keys.write_row((i, kind, value, authority, normalise(value)))
        with cur.copy(
            "COPY channels_app_delivery (message_id, destination_id, status, attempt_count, "
            "created_at, next_attempt_at, last_error, ordering_key, attempts_at_replay) FROM STDIN"
        ) as deliveries:
            for i in range(1, MESSAGES + 1):
                at = begin + timedelta(seconds=i * 7)
                failed = rng.random() < 0.01
                deliveries.write_row(
                    (i, destination, "FAILED" if failed else "DELIVERED", 1, at, at, "", "", 0)
                )
        cur.execute(
            "CREATE INDEX messagekey_search ON channels_app_messagekey "
            "(normalised) INCLUDE (kind, message_id)"
        )
        cur.execute(
            "CREATE INDEX messagekey_of_message ON channels_app_messagekey "
            "(message_id, normalised) INCLUDE (kind)"
        )
        cur.execute(f"SELECT setval('channels_app_message_id_seq', {MESSAGES})")
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def timed(client, queries: list[str]) -> dict[str, float]:
    took = []
    for q in queries:
        started = time.perf_counter()
        response = client.get("/api/v1/messages/", {"q": q})
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
    took.sort()
    return {"p50": took[len(took) // 2], "p95": took[int(len(took) * 0.95)]}


def main() -> None:
    url = bench_url()
    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="console.settings")
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from channels_app.models import Channel, Destination

    if REUSE and Channel.objects.filter(name="Bench").exists():
        measure()
        return
    channel = Channel.objects.create(name="Bench", source_config={"host": "127.0.0.1", "port": 1})
    destination = Destination.objects.create(
        channel=channel,
        name="EHR",
        transport=Destination.Transport.FHIR_REST,
        config={"base_url": "http://127.0.0.1:9/fhir"},
    )
    seconds = generate(url, channel.pk, destination.pk)
    print(f"generated {MESSAGES:,} messages with their keys and deliveries in {seconds:.0f} s")

    measure()


def measure() -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from console.roles import Role, set_role

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    viewer, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    set_role(viewer, Role.VIEWER)
    client = Client(secure=True)
    client.force_login(viewer)
    rng = random.Random(7)
    searches = {
        "mrn": [patient(rng.randrange(PATIENTS))[0] for _ in range(SAMPLES)],
        "order": [f"ORD{rng.randrange(1, MESSAGES):08d}" for _ in range(SAMPLES)],
        "name_prefix": [rng.choice(FAMILIES)[:3].lower() for _ in range(SAMPLES)],
        "family_given": [
            f"{rng.choice(FAMILIES)} {rng.choice(GIVENS)[:2]}" for _ in range(SAMPLES)
        ],
    }
    figures = {}
    for name, queries in searches.items():
        timed(client, queries[:5])  # warm the caches a first request fills
        result = timed(client, queries)
        print(f"{name:13s} p50 {result['p50']:7.1f} ms  p95 {result['p95']:7.1f} ms  (n={SAMPLES})")
        figures[f"search_{name}_p95_ms"] = round(result["p95"], 1)
    figures["search_messages"] = MESSAGES
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
