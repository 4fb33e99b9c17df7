"""Run every benchmark module in turn and merge their BENCH lines into one final line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Those that need the database and Redis first; pure-code benchmarks after.
ORDER = ["spine", "bench_delivery", "bench_mapping", "bench_codec"]


def main() -> int:
    figures: dict = {}
    failed = []
    modules = [m for m in ORDER if (HERE / f"{m}.py").exists()]
    modules += sorted(p.stem for p in HERE.glob("bench_*.py") if p.stem not in ORDER)
    for module in modules:
        print(f"\n== bench.{module}", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", f"bench.{module}"],
            cwd=HERE.parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH "):
                figures.update(json.loads(line[6:]))
            else:
                print(line, flush=True)
        if proc.returncode:
            failed.append(module)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    print("BENCH " + json.dumps(figures, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
