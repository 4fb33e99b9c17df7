"""Cost of the depth and size bound on JSON input (adapters/codecs/bounded_json) over plain
``json.loads``, on what HTTP inbound and the API read: a FHIR transaction Bundle of about 10 KB,
one of about 1 MB, and the refusal of a 100 kB body nested 50,000 levels deep (which plain
``json.loads`` answers with a RecursionError).

Printed: CPU time per read (µs, median of repeats; the machine is shared, CPU time is what the
code costs) for each, and the overhead in percent. Last line: ``BENCH {json}``.

    python -m bench.bench_bounded_json [--seconds 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from adapters.codecs import bounded_json


def bundle(observations: int) -> bytes:
    entries = [
        {
            "fullUrl": f"urn:uuid:{i:08d}-0000-4000-8000-000000000000",
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": f"{1000 + i}-1"}]},
                "valueQuantity": {"value": i / 7, "unit": "g/dL"},
                "extension": [{"url": "http://example.org/x", "valueString": "[not a bracket]"}],
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        for i in range(observations)
    ]
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()


def cpu_us(read, data: bytes, seconds: float) -> float:
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(times) < 5:
        start = time.process_time_ns()
        read(data)
        times.append((time.process_time_ns() - start) / 1000)
    return statistics.median(times)


def refuse(data: bytes) -> None:
    try:
        bounded_json.loads(data)
    except bounded_json.JsonLimitError:
        return
    raise AssertionError("a deep body was read")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    seconds = parser.parse_args().seconds
    figures = {}
    for label, data in (("10kB", bundle(25)), ("1MB", bundle(2500))):
        plain = cpu_us(json.loads, data, seconds)
        bounded = cpu_us(bounded_json.loads, data, seconds)
        overhead = 100 * (bounded - plain) / plain
        print(
            f"Bundle {len(data) / 1000:.0f} kB: json.loads {plain:.0f} µs, "
            f"bounded {bounded:.0f} µs (+{overhead:.0f}%)"
        )
        figures[f"bounded_json_{label}_us"] = round(bounded, 1)
        figures[f"bounded_json_{label}_overhead_pct"] = round(overhead, 1)
    deep = b"[" * 50_000 + b"]" * 50_000
    refused = cpu_us(refuse, deep, seconds)
    print(f"100 kB nested 50,000 deep: refused in {refused:.0f} µs")
    figures["bounded_json_deep_refusal_us"] = round(refused, 1)
    print("BENCH " + json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
