"""CPU per message of the process stage's pure work, by stage, over the corpus mix: parse,
convert (the canonical map), validate and search-key extraction.

Every HL7 v2 message of the shared corpus (HL7_CORPUS, batches split) and of the map tests'
samples is taken in turn; each stage's CPU time (``time.process_time``) is summed over
``--rounds`` passes of the whole mix, best of ``--repeat``, and printed in µs per message.
The machine is shared: CPU time, best of several, is what the code costs.

``--dump FILE`` writes every message's outputs instead (canonical JSON, issues, keys), one line
each, so two versions of the code can be compared byte for byte.

    python -m bench.bench_convert_mix [--rounds 20] [--repeat 5] [--dump FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from adapters import keys
from adapters.codecs import exact_json, hl7v2
from adapters.codecs.hl7v2_batch import is_batch, split_batch
from adapters.mapping import MappingError, convert, validate, warm_up

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("HL7_CORPUS", REPO.parent / "shared" / "corpus"))
SAMPLES = REPO / "tests" / "adapters" / "mapping" / "samples"
STAGES = ("parse", "convert", "validate", "keys")


def mix() -> list[tuple[str, bytes]]:
    """(name, raw) for every v2 message of the corpus and the samples."""
    found = []
    for path in sorted(CORPUS.rglob("*.hl7")) + sorted(SAMPLES.glob("*.hl7")):
        parts = _split(path.read_bytes())
        found += [(f"{path.name}#{i}", raw) for i, raw in enumerate(parts)]
    return found


def _split(data: bytes) -> list[bytes]:
    try:
        return split_batch(data) if is_batch(data) else [data]
    except hl7v2.HL7Error:  # a malformed batch: the pipeline tries it whole
        return [data]


def run_once(raw: bytes, times: dict[str, float] | None = None) -> dict:
    """One message through the four stages; ``times`` (if given) gathers each stage's CPU."""
    clock = time.process_time
    t0 = clock()
    out: dict = {}
    try:
        message = hl7v2.parse(raw)
    except hl7v2.HL7Error as exc:
        return {"parse_error": str(exc)}
    t1 = clock()
    try:
        result = convert(message, check=False)
    except MappingError as exc:
        result, out["map_error"] = None, str(exc)
    t2 = clock()
    if result is not None:
        try:
            validate(result.bundle)
        except MappingError as exc:
            out["invalid"] = str(exc)
    t3 = clock()
    found = keys.extract(message)
    t4 = clock()
    if times is not None:
        for stage, spent in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[stage] += spent
    out["keys"] = [list(k) for k in found]
    if result is not None:
        out["bundle"] = result.bundle
        out["issues"] = [i.as_dict() for i in result.issues]
        out["types"] = result.resource_types
    return out


def dump(messages: list[tuple[str, bytes]], target: Path) -> None:
    with target.open("w", encoding="utf-8") as file:
        for name, raw in messages:
            for profile in (None, "us-core"):
                line = {"name": name, "profile": profile, **_outputs(raw, profile)}
                file.write(exact_json.dumps(line, ensure_ascii=False) + "\n")
    print(f"wrote the outputs of {len(messages)} messages to {target}")


def _outputs(raw: bytes, profile: str | None) -> dict:
    if profile is None:
        return run_once(raw)
    try:
        return {"bundle": convert(hl7v2.parse(raw), profile=profile).bundle}
    except (hl7v2.HL7Error, MappingError) as exc:
        return {"error": str(exc)}


def measure(messages: list[tuple[str, bytes]], rounds: int, repeat: int) -> dict[str, float]:
    """Best (lowest) µs per message of each stage over ``repeat`` runs of ``rounds`` passes."""
    best = dict.fromkeys(STAGES, float("inf"))
    for _ in range(repeat):
        times = dict.fromkeys(STAGES, 0.0)
        for _ in range(rounds):
            for _, raw in messages:
                run_once(raw, times)
        count = rounds * len(messages)
        for stage in STAGES:
            best[stage] = min(best[stage], times[stage] / count * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="passes over the mix per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is kept")
    parser.add_argument("--dump", type=Path, help="write every message's outputs here instead")
    args = parser.parse_args()
    messages = mix()
    if args.dump:
        dump(messages, args.dump)
        return
    warm_up()
    for _, raw in messages:  # the first pass fills the validator's caches, as a worker's would
        run_once(raw)
    best = measure(messages, args.rounds, args.repeat)
    total = sum(best.values())
    shown = "  ".join(f"{stage} {best[stage]:.0f}" for stage in STAGES)
    print(f"{len(messages)} messages, µs of CPU per message: {shown}  (total {total:.0f})")
    figures = {f"mix_{stage}_us": round(best[stage], 1) for stage in STAGES}
    print("BENCH " + json.dumps({**figures, "mix_total_us": round(total, 1)}))


if __name__ == "__main__":
    main()
