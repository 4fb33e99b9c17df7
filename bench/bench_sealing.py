"""Cost of encryption at rest: one seal per message on ingest, one unseal per read (delivery,
message page), for an ORU^R01 with 20 OBX (about 2 KB), two keys configured as during a rotation.

Printed: seal and unseal p50/p95 in µs of this thread's CPU time, wall time beside them. Needs no
database: only the keys are configured. Last line: ``BENCH {json}``.

    python -m bench.bench_sealing [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from cryptography.fernet import Fernet
from django.conf import settings

BATCH = 50


def oru_r01(n_obx: int = 20) -> bytes:
    obx = "".join(
        f"OBX|{i}|NM|2345-7^GLUCOSE^LN||{90 + i}|mg/dL^mg/dL^UCUM|70-105|N|||F|||20240102040000-0500\r"
        for i in range(1, n_obx + 1)
    )
    return (
        "MSH|^~\\&|LAB|FAC|HUB|HUB|20240102040000||ORU^R01|COST-1|P|2.5.1\r"
        "PID|1||MRN123^^^HOSP^MR||Doe^Jane||19700101|F\r"
        "OBR|1||ORD1|24323-8^Metabolic panel^LN|||20240102035000\r" + obx
    ).encode()


def per_call(action, items: list, seconds: float) -> tuple[list[float], list[float]]:
    """µs per call of ``action`` over ``items``, batch by batch: (CPU, wall)."""
    cpu, wall = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        c0, w0 = time.thread_time(), time.perf_counter()
        for item in items:
            action(item)
        cpu.append((time.thread_time() - c0) / len(items) * 1e6)
        wall.append((time.perf_counter() - w0) / len(items) * 1e6)
    return cpu, wall


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    settings.configure(HUB_ENCRYPTION_KEYS=[Fernet.generate_key().decode() for _ in range(2)])
    from channels_app import sealing

    raw = oru_r01()
    sealed = [sealing.seal(raw) for _ in range(BATCH)]  # the cipher built once, as in a process
    assert sealing.unseal(sealed[0]) == raw
    figures = {}
    for name, action, items in (
        ("seal", sealing.seal, [raw] * BATCH),
        ("unseal", sealing.unseal, sealed),
    ):
        cpu, wall = per_call(action, items, args.seconds)
        p50, p95 = percentile(cpu, 50), percentile(cpu, 95)
        print(
            f"{name:6s} {len(raw)} bytes: CPU p50 {p50:.1f} µs  p95 {p95:.1f} µs"
            f"   (wall p50 {percentile(wall, 50):.1f} µs; n={len(cpu)} x {BATCH})"
        )
        figures[f"sealing_{name}_p50_us"] = round(p50, 1)
        figures[f"sealing_{name}_p95_us"] = round(p95, 1)
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
