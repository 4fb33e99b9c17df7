"""Where the shared HL7 sample corpus lives, and what its MANIFEST.tsv says about each file."""

from __future__ import annotations

import codecs
import csv
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CORPUS = Path(os.environ.get("HL7_CORPUS") or REPO / ".." / "shared" / "corpus").resolve()
SKIP_REASON = f"HL7 corpus not found at {CORPUS}"


@dataclass(frozen=True)
class Entry:
    file: str
    message_types: tuple[str, ...]  # MSH-9 as written, one per message ("" when no MSH)
    version: str
    notes: str


def corpus_files() -> list[str]:
    """Every .hl7 file under the corpus, relative and sorted ([] when the corpus is absent)."""
    if not CORPUS.is_dir():
        return []
    return sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.hl7"))


def manifest() -> dict[str, Entry]:
    path = CORPUS / "MANIFEST.tsv"
    if not path.is_file():
        return {}
    entries = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            types = row["message_type"]
            if "\\x" in types:  # bytes written as Python escapes (the latin-1 sample)
                types = codecs.decode(types.encode("latin-1"), "unicode_escape")
            entries[row["file"]] = Entry(
                row["file"],
                () if types.startswith("(") else tuple(types.split(",")),
                row["hl7_version"],
                row["notes"],
            )
    return entries
