"""Fidelity of the HL7 v2 -> FHIR R4 maps against FHIR-Converter's published outputs.

Every ``*.expected.json`` of the shared corpus is paired with the Bundle our map makes of the
``.hl7`` beside it and compared by ``compare_fhir.py`` (the shared tool beside the corpus):
recall (reference facts we reproduce) and precision (our facts the reference confirms), per
resource type and overall. The corpus is HL7_CORPUS, else ../shared/corpus.

    python -m bench.bench_fidelity [--files] [--diff TYPE] [--missing TYPE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

from adapters.codecs import hl7v2
from adapters.mapping import convert

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("HL7_CORPUS", REPO.parent / "shared" / "corpus"))


def load_compare_tool():
    """The shared compare_fhir.py module (it is a script, not a package)."""
    path = CORPUS.parent / "tools" / "compare_fhir.py"
    spec = importlib.util.spec_from_file_location("compare_fhir", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_files(corpus: Path = CORPUS) -> list[Path]:
    return sorted(corpus.rglob("*.expected.json"))


def candidate_bundle(expected: Path) -> dict:
    hl7_path = expected.with_name(expected.name.removesuffix(".expected.json") + ".hl7")
    return convert(hl7v2.parse(hl7_path.read_bytes())).bundle


def _entries(bundle: dict) -> list:
    return [(e.get("fullUrl"), e["resource"]) for e in bundle.get("entry", [])]


def measure(corpus: Path = CORPUS, max_list: int = 10_000) -> tuple[dict, dict]:
    """({file name: compare report}, summary with by_type and overall)."""
    tool = load_compare_tool()
    reports = {}
    for expected in reference_files(corpus):
        name = str(expected.relative_to(corpus)).removesuffix(".expected.json")
        reference = tool.load_entries(expected)
        reports[name] = tool.compare(reference, _entries(candidate_bundle(expected)), max_list)
    return reports, tool.summarise(reports)


def _percent(x) -> str:
    return "   n/a" if x is None else f"{100 * x:5.1f}%"


def print_summary(reports: dict, summary: dict, show_files: bool) -> None:
    print(f"  {'type':<20} {'recall':>7} {'precision':>9} {'ref':>6} {'cand':>6} {'matched':>7}")
    rows = [*summary["by_type"].items(), ("OVERALL", summary["overall"])]
    for name, d in rows:
        print(
            f"  {name:<20} {_percent(d['recall']):>7} {_percent(d['precision']):>9}"
            f" {d['ref']:>6} {d['cand']:>6} {d['matched']:>7}"
        )
    if show_files:
        print()
        by_recall = sorted(reports.items(), key=lambda kv: kv[1]["overall"]["recall"] or 0)
        for name, report in by_recall:
            d = report["overall"]
            print(f"  {name:<48} {_percent(d['recall'])} {_percent(d['precision'])}")


def print_differences(reports: dict, rtype: str, extra: bool = True) -> None:
    for name, report in reports.items():
        found = report["types"].get(rtype)
        shown = [f"  - {m}" for m in found["missing"]] if found else []
        shown += [f"  + {e}" for e in found["extra"]] if found and extra else []
        if shown:
            print(f"== {name}", *shown, sep="\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", action="store_true", help="also list each file's figures")
    parser.add_argument("--diff", metavar="TYPE", help="list missing (-) and extra (+) facts")
    parser.add_argument("--missing", metavar="TYPE", help="list the missing facts only")
    args = parser.parse_args()
    if not CORPUS.is_dir() or not (CORPUS.parent / "tools" / "compare_fhir.py").exists():
        print(f"corpus or tools/compare_fhir.py not found beside {CORPUS}: skipped")
        return 0
    reports, summary = measure()
    if args.diff or args.missing:
        print_differences(reports, args.diff or args.missing, extra=bool(args.diff))
        return 0
    print_summary(reports, summary, args.files)
    overall = summary["overall"]
    figures = {"fidelity_recall": overall["recall"], "fidelity_precision": overall["precision"]}
    print("BENCH " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
