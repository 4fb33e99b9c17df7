"""The fault suite's figures: one JSON line per scenario in var/faults/results.jsonl, and a table.

``python -m tests.faults.report`` prints the table of the latest run (``make faults`` does).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "var" / "faults" / "results.jsonl"
# Every scenario of one pytest session shares this id, so the table shows one run.
RUN = os.environ.get("FAULTS_RUN") or time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"

COLUMNS = (
    ("scenario", "scenario", "<"),
    ("sent", "sent", ">"),
    ("acked", "acked", ">"),
    ("delivered", "delivered", ">"),
    ("duplicates", "dup", ">"),
    ("lost", "lost", ">"),
    ("drain_s", "drain s", ">"),
    ("naks", "NAKs", ">"),
    ("silences", "no ACK", ">"),
    ("requests", "requests", ">"),
    ("retries", "retries", ">"),
    ("absorbed", "absorbed", ">"),
    ("restarts", "restarts", ">"),
    ("notes", "notes", "<"),
)


# The rows this process recorded, for the table at the end of the pytest session.
RECORDED: list[dict] = []


def append(row: dict) -> None:
    RECORDED.append({"run": RUN, **row})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps({"run": RUN, **row}, sort_keys=True) + "\n")


def latest_run(path: Path = RESULTS) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return []
    last = rows[-1]["run"]
    return [r for r in rows if r["run"] == last]


def table(rows: list[dict]) -> str:
    cells = [[str(row.get(key, "")) for key, _, _ in COLUMNS] for row in rows]
    widths = [
        max([len(title)] + [len(c[i]) for c in cells]) for i, (_, title, _) in enumerate(COLUMNS)
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            f"{v:{align}{w}}" for v, w, (_, _, align) in zip(values, widths, COLUMNS, strict=True)
        ).rstrip()

    out = [line([title for _, title, _ in COLUMNS]), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)


def main() -> int:
    rows = latest_run()
    if not rows:
        print(f"no fault figures in {RESULTS} (run make faults)")
        return 1
    print(f"fault suite, run {rows[0]['run']}: every AA'd message must arrive exactly once")
    print(table(rows))
    bad = [
        r["scenario"]
        for r in rows
        if r["lost"] or r["duplicates"] or r.get("unexpected_restarts") or r["acked"] == 0
    ]
    if bad:
        print(f"NOT exactly once: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
