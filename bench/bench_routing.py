"""Cost of routing on the message path: a channel's five rules decided on one message.

The five rules mix what analysts write: three on the canonical Bundle (a final report, a patient,
an abnormal result) and two on the v2 header (%messageCode, %messageType with %sendingFacility).
They are compiled once, as the worker compiles them once per channel routing version (all five
are on adapters.fhirpath_fast's fast path; the same rules on fhirpathpy alone are measured too,
for comparison); each iteration decides them on another message (variants of bench_mapping's ADT and 20-OBX ORU,
converted beforehand), so what is measured is evaluation alone.

Printed: p50/p95 in µs per message of this thread's CPU time (the machine is shared) and of wall
time. ``BENCH`` keys: ``route5_p50_us``, ``route5_p95_us`` (CPU), ``route5_wall_*`` and
``route5_fhirpathpy_p95_us``.

    python -m bench.bench_routing [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from adapters.codecs import hl7v2
from adapters.mapping import convert, warm_up
from adapters.routing import RoutingTable, compile_table, header_variables
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


def _measure(table: RoutingTable, inputs: list, seconds: float) -> dict:
    wall, cpu = [], []
    deadline = time.perf_counter() + seconds
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
        return round(values[min(len(values) - 1, int(len(values) * p))] * 1e6)

    return {
        "n": len(wall),
        "p50": pct(cpu, 0.50),
        "p95": pct(cpu, 0.95),
        "wall_p50": pct(wall, 0.50),
        "wall_p95": pct(wall, 0.95),
    }


def _engine_only(table: RoutingTable) -> RoutingTable:
    """The same rules with the fast path off: fhirpathpy evaluates every one."""
    targets = tuple(replace(t, rule=replace(t.rule, fast=None)) for t in table.targets)
    return replace(table, targets=targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    warm_up()
    table = compile_table("", [(i, f"destination {i}", rule) for i, rule in enumerate(RULES)])
    assert all(t.rule.fast for t in table.targets), "every rule here is on the fast path"
    inputs = _inputs(100)
    routed = {len(table.decide(b, h).routed) for b, h in inputs}
    assert routed != {0}, "the rules must route something"
    r = _measure(table, inputs, args.seconds)
    print(
        f"5 rules, ADT and ORU(20 OBX) alternating: CPU p50 {r['p50']} µs  p95 {r['p95']} µs   "
        f"(wall p50 {r['wall_p50']} µs, p95 {r['wall_p95']} µs; n={r['n']}; target p95 < 200 µs)"
    )
    slow = _measure(_engine_only(table), inputs, args.seconds)
    print(
        f"the same with fhirpathpy alone (no fast path): CPU p50 {slow['p50']} µs  "
        f"p95 {slow['p95']} µs"
    )
    figures = {
        "route5_p50_us": r["p50"],
        "route5_p95_us": r["p95"],
        "route5_wall_p50_us": r["wall_p50"],
        "route5_wall_p95_us": r["wall_p95"],
        "route5_fhirpathpy_p95_us": slow["p95"],
    }
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
