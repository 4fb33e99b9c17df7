"""Cost of routing on the message path: a channel's five rules decided on one message.

The five rules mix what analysts write: three on the canonical Bundle (a final report, a patient,
an abnormal result) and two on the v2 header (%messageCode, %messageType with %sendingFacility).
They are compiled once, as the worker compiles them once per channel routing version; each
iteration decides them on another message (variants of bench_mapping's ADT and 20-OBX ORU,
converted beforehand), so what is measured is evaluation alone.

Printed: p50/p95 in µs per message of this thread's CPU time (the machine is shared) and of wall
time. ``BENCH`` keys: ``route5_p50_us``, ``route5_p95_us`` (CPU) and ``route5_wall_*``.

    python -m bench.bench_routing [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import time

from adapters.codecs import hl7v2
from adapters.mapping import convert, warm_up
from adapters.routing import compile_table, header_variables
from bench.bench_mapping import ADT_A01, ORU_R01_20, variants

RULES = (
    "entry.resource.ofType(DiagnosticReport).where(status = 'final').exists()",
    "%messageCode = 'ADT'",
    "%messageType = 'ORU^R01' and %sendingFacility.startsWith('GOOD')",
    "entry.resource.ofType(Patient).exists()",
    "entry.resource.ofType(Observation).where(interpretation.coding.code = 'H').exists()",
)


def _inputs(count: int) -> list[tuple[dict, dict]]:
    out = []
    for raw in [*variants(ADT_A01, count), *variants(ORU_R01_20, count)]:
        parsed = hl7v2.parse(raw)
        kind = f"{parsed.get('MSH-9.1')}^{parsed.get('MSH-9.2')}"
        header = header_variables(kind, parsed.get("MSH-3.1"), parsed.get("MSH-4.1"))
        out.append((convert(parsed).bundle, header))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    warm_up()
    table = compile_table("", [(i, f"destination {i}", rule) for i, rule in enumerate(RULES)])
    inputs = _inputs(100)
    routed = {len(table.decide(b, h).routed) for b, h in inputs}
    assert routed != {0}, "the rules must route something"
    wall, cpu = [], []
    deadline = time.perf_counter() + args.seconds
    i = 0
    while time.perf_counter() < deadline or len(wall) < 200:
        bundle, header = inputs[i % len(inputs)]
        i += 1
        w0, c0 = time.perf_counter(), time.thread_time()
        table.decide(bundle, header)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    wall.sort()
    cpu.sort()

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(len(values) * p))] * 1e6

    figures = {
        "route5_p50_us": round(pct(cpu, 0.50)),
        "route5_p95_us": round(pct(cpu, 0.95)),
        "route5_wall_p50_us": round(pct(wall, 0.50)),
        "route5_wall_p95_us": round(pct(wall, 0.95)),
    }
    print(
        f"5 rules, ADT and ORU(20 OBX) alternating: CPU p50 {figures['route5_p50_us']} µs  "
        f"p95 {figures['route5_p95_us']} µs   (wall p50 {figures['route5_wall_p50_us']} µs, "
        f"p95 {figures['route5_wall_p95_us']} µs; n={len(wall)}; target p95 < 200 µs)"
    )
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
