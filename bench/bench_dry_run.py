"""Cost of the test bench's dry run per message: parse, convert, validate, route and encode for
three destinations (FHIR REST, a webhook template, a file), as the page and the API run it.

A channel with those destinations (two with a route_when) is created in a fresh database
(<name>_bench); each iteration dry-runs another message (variants of bench_mapping's ADT and
20-OBX ORU). Printed: p50/p95 in ms of wall time and of this thread's CPU time. ``BENCH`` keys:
``dryrun_p50_ms``, ``dryrun_p95_ms`` (wall), ``dryrun_cpu_p50_ms``, ``dryrun_cpu_p95_ms``.
The target: well under a second (the page answers in one round trip).

    python -m bench.bench_dry_run [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.bench_mapping import ADT_A01, ORU_R01_20, variants
from bench.spine import ROOT, bench_urls


def setup(directory: str):
    from channels_app.models import Channel, Destination

    channel = Channel.objects.create(name="bench dry run", source_config={"port": 9})
    common = {"channel": channel, "timeout_s": 5}
    Destination.objects.create(
        name="FHIR server",
        transport=Destination.Transport.FHIR_REST,
        config={"base_url": "http://127.0.0.1:9/fhir"},
        **common,
    )
    Destination.objects.create(
        name="MRN hook",
        transport=Destination.Transport.WEBHOOK,
        config={
            "url": "http://127.0.0.1:9/hook",
            "body": "template",
            "template": {"mrn": "=entry.resource.ofType(Patient).identifier.value"},
        },
        route_when="%messageCode = 'ADT'",
        **common,
    )
    Destination.objects.create(
        name="final reports",
        transport=Destination.Transport.FILE,
        config={"directory": directory},
        route_when="entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()",
        **common,
    )
    return channel


def measure(channel, messages: list[bytes], seconds: float) -> dict:
    from channels_app.dry_run import dry_run

    wall, cpu = [], []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline or len(wall) < 100:
        raw = messages[i % len(messages)]
        i += 1
        w0, c0 = time.perf_counter(), time.thread_time()
        result = dry_run(channel, raw)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
        assert result.error is None and result.outputs, result.error
    wall.sort()
    cpu.sort()

    def pct(values: list[float], p: float) -> float:
        return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 2)

    return {
        "n": len(wall),
        "p50": pct(wall, 0.50),
        "p95": pct(wall, 0.95),
        "cpu_p50": pct(cpu, 0.50),
        "cpu_p95": pct(cpu, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time measured")
    args = parser.parse_args()
    db_url, redis_url = bench_urls()
    os.environ.update(
        DATABASE_URL=db_url, REDIS_URL=redis_url, DJANGO_SETTINGS_MODULE="console.settings"
    )
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from adapters.mapping import warm_up

    warm_up()
    with tempfile.TemporaryDirectory() as directory:
        channel = setup(directory)
        messages = [*variants(ADT_A01, 50), *variants(ORU_R01_20, 50)]
        measure(channel, messages[:10], 0.5)  # connections, caches
        r = measure(channel, messages, args.seconds)
        assert os.listdir(directory) == [], "a dry run writes nothing"
    print(
        f"dry run, ADT and ORU(20 OBX) alternating, 3 destinations: wall p50 {r['p50']} ms  "
        f"p95 {r['p95']} ms  (CPU p50 {r['cpu_p50']} ms, p95 {r['cpu_p95']} ms; n={r['n']}; "
        "target well under 1000 ms)"
    )
    figures = {
        "dryrun_p50_ms": r["p50"],
        "dryrun_p95_ms": r["p95"],
        "dryrun_cpu_p50_ms": r["cpu_p50"],
        "dryrun_cpu_p95_ms": r["cpu_p95"],
    }
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
