"""Cost of a channel's field rules: twenty rules (v2 and FHIRPath sources, every transform kind)
applied to one ADT and its Bundle, as the process stage does after the canonical map.

Printed: `rules.apply` p50/p95 in µs of this thread's CPU time (the machine is shared; CPU time
is what the code costs), wall time beside it. Then an HL7 v2 channel as the process stage runs
it: the built-in map alone, and the built-in map with five channel rules (applied with the
conditional requests kept in step, then validated), measured side by side. Last line:
``BENCH {json}``.

    python -m bench.bench_field_rules [--seconds 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

from adapters.codecs import hl7v2
from adapters.mapping import convert
from adapters.mapping.field_rules import compile_rules
from adapters.mapping.v2_rules import apply_after_map
from adapters.mapping.validation import validate

MESSAGE = (
    "MSH|^~\\&|REG|FAC|HUB|HUB|20240301101500+0100||ADT^A01|C1|P|2.5.1\r"
    "PID|1||123^^^HOSP^MR~456^^^OTHER^PI||  doe ^John^Q||19800102|m|||"
    '1 Main St^^Springfield^IL^62701||555-123-4567|||||||""\r'
    "PV1|1|I|4E^401^B||||||||||||||||V100|||||||||||||||||||||||||20240301093000\r"
)
SOURCE_BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:p1",
            "resource": {"resourceType": "Patient", "identifier": [{"value": "123"}]},
        },
        {
            "fullUrl": "urn:uuid:e1",
            "resource": {"resourceType": "Encounter", "status": "in-progress"},
        },
    ],
}
TWENTY_RULES = [
    {
        "source": "PID-5.1",
        "target": "Patient.name[0].family",
        "transforms": ["trim", "upper"],
    },
    {"source": "PID-5.2", "target": "Patient.name[0].given[0]", "transforms": ["trim"]},
    {"source": "PID-5.3", "target": "Patient.name[0].given[1]"},
    {
        "source": "PID-7",
        "target": "Patient.birthDate",
        "transforms": [{"op": "date", "from": "v2", "to": "fhir"}],
    },
    {
        "source": "PID-8",
        "target": "Patient.gender",
        "transforms": [
            {
                "op": "lookup",
                "table": {"M": "male"},
                "ignore_case": True,
                "default": "unknown",
            }
        ],
    },
    {"source": "PID-3(1).1", "target": "Patient.identifier[0].value"},
    {
        "source": "PID-3(1).4",
        "target": "Patient.identifier[0].system",
        "transforms": [{"op": "lookup", "table": {"HOSP": "urn:oid:1.2"}, "miss": "keep"}],
    },
    {"source": "PID-3(2).1", "target": "Patient.identifier[1].value"},
    {"source": "PID-11.1", "target": "Patient.address[0].line[0]"},
    {"source": "PID-11.3", "target": "Patient.address[0].city", "transforms": ["upper"]},
    {"source": "PID-11.4", "target": "Patient.address[0].state"},
    {
        "source": "PID-11.5",
        "target": "Patient.address[0].postalCode",
        "transforms": [{"op": "replace", "pattern": r"\D", "replacement": ""}],
    },
    {
        "source": "PID-13",
        "target": "Patient.telecom[0].value",
        "transforms": [{"op": "replace", "pattern": "-", "replacement": ""}],
    },
    {
        "target": "Patient.telecom[0].system",
        "transforms": [{"op": "default", "value": "phone"}],
    },
    {
        "source": ["PID-5.2", "PID-5.1"],
        "target": "Patient.name[0].text",
        "transforms": ["trim", {"op": "concat", "separator": " "}],
    },
    {"source": "PV1-19", "target": "Encounter.identifier[0].value"},
    {"source": "PV1-3.1", "target": "Encounter.location[0].location.display"},
    {
        "source": "PV1-44",
        "target": "Encounter.period.start",
        "transforms": [{"op": "date", "from": "v2", "to": "fhir", "tz": "+01:00"}],
    },
    {
        "source": "PV1-2",
        "target": "Encounter.class.code",
        "transforms": [{"op": "lookup", "table": {"I": "IMP"}}],
    },
    {"source": "Patient.identifier.value.first()", "target": "Encounter.subject.display"},
]


FIVE_CHANNEL_RULES = [
    {"source": "PID-5(1).1", "target": "Patient.name[0].family", "transforms": ["trim", "upper"]},
    {
        "source": "PID-3(1).1",
        "target": "Patient.identifier[0].value",
        "transforms": [{"op": "replace", "pattern": "^", "replacement": "H-"}],
    },
    {
        "source": "PID-8",
        "target": "Patient.gender",
        "transforms": [{"op": "lookup", "table": "sex", "ignore_case": True, "miss": "keep"}],
    },
    {"source": "PID-11(1).3", "target": "Patient.address[0].city", "transforms": ["upper"]},
    {"source": "PV1-3.1", "target": "Encounter.location[0].location.display"},
]


def measure_channel(seconds: float) -> dict:
    """The built-in map alone vs. with five rules, alternated so both see the same load."""
    message = hl7v2.parse(MESSAGE)
    rules = compile_rules(FIVE_CHANNEL_RULES, tables={"sex": {"M": "male", "F": "female"}})

    def built_in() -> None:
        convert(message)

    def with_rules() -> None:
        bundle = convert(message, check=False).bundle
        after, issues = apply_after_map(rules, message, bundle)
        validate(after)

    with_rules()
    found: dict[str, list[float]] = {"map": [], "map_5_rules": []}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, run in (("map", built_in), ("map_5_rules", with_rules)):
            c0 = time.thread_time()
            for _ in range(10):
                run()
            found[name].append((time.thread_time() - c0) / 10 * 1e6)
    return found


def measure(seconds: float) -> dict:
    rules = compile_rules(TWENTY_RULES)
    message = hl7v2.parse(MESSAGE)
    out, issues = rules.apply(message, copy.deepcopy(SOURCE_BUNDLE))
    assert not issues, issues
    cpu, wall = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        c0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(20):
            rules.apply(message, SOURCE_BUNDLE)
        cpu.append((time.thread_time() - c0) / 20 * 1e6)
        wall.append((time.perf_counter() - w0) / 20 * 1e6)
    return {"cpu": cpu, "wall": wall}


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time to measure")
    args = parser.parse_args()
    measure(0.2)  # warm: compiled FHIRPath and lookups cached as in a running worker
    r = measure(args.seconds)
    p50, p95 = percentile(r["cpu"], 50), percentile(r["cpu"], 95)
    wall50, wall95 = percentile(r["wall"], 50), percentile(r["wall"], 95)
    print(
        f"20 field rules per message: CPU p50 {p50:.0f} µs  p95 {p95:.0f} µs"
        f"   (wall p50 {wall50:.0f} µs, p95 {wall95:.0f} µs; n={len(r['cpu'])} x 20)"
    )
    channel = measure_channel(args.seconds)
    map50, rules50 = percentile(channel["map"], 50), percentile(channel["map_5_rules"], 50)
    rules95 = percentile(channel["map_5_rules"], 95)
    print(
        f"HL7 v2 ADT, built-in map: CPU p50 {map50:.0f} µs; with 5 channel rules: p50"
        f" {rules50:.0f} µs, p95 {rules95:.0f} µs (+{rules50 - map50:.0f} µs; n={len(channel['map'])} x 10)"
    )
    print(
        "BENCH "
        + json.dumps(
            {
                "field_rules_20_p50_us": round(p50),
                "field_rules_20_p95_us": round(p95),
                "field_rules_20_wall_p50_us": round(wall50),
                "v2_map_p50_us": round(map50),
                "v2_map_5_rules_p50_us": round(rules50),
                "v2_map_5_rules_p95_us": round(rules95),
            }
        )
    )


if __name__ == "__main__":
    main()
