"""Cost of viewer masking (console.phi): gathering one message's PHI values, then masking the
outside texts shown about it. The values are gathered once per message and response, so a page
or an API response pays ``gather`` once and ``mask`` per text.

Messages: the ADT of bench_codec (about 1 KB) and the 10 KB ORU, each with its canonical Bundle.
Texts: an attempt error quoting an OperationOutcome that names the patient, and its issue.

Printed: p50/p95 in µs of wall time and of this thread's CPU time. Last line: ``BENCH {json}``.

    python -m bench.bench_phi [--seconds 1]
"""

from __future__ import annotations

import argparse
import json

from adapters.codecs import hl7v2
from adapters.mapping.convert import convert
from bench.bench_codec import ADT, _oru, _timed
from console.phi import mask_body, mask_free_text, message_phi

ERROR = (
    "POST http://127.0.0.1:8080/fhir answered 400 Bad Request: OperationOutcome: error: Patient"
    " Everyman Adam (MRN 555123, born 1961-06-15, Greensboro, tel 336-5551234) rejected:"
    " duplicate record"
)
ISSUE = {
    "severity": "error",
    "code": "duplicate",
    "diagnostics": ERROR.split("error: ", 1)[1],
    "expression": ["Patient.identifier[0]"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    oru_name, oru = _oru()
    for key, name, data in (("adt", "ADT 1 KB", ADT.encode()), ("oru10k", oru_name, oru)):
        raw = data.decode("utf-8", "replace")
        canonical = convert(hl7v2.parse(data)).bundle
        phi = message_phi(raw, canonical)
        steps = (
            ("gather", lambda raw=raw, canonical=canonical: message_phi(raw, canonical)),
            ("mask_error", lambda phi=phi: mask_free_text(ERROR, phi)),
            ("mask_issue", lambda phi=phi: mask_free_text([ISSUE], phi)),
            ("mask_body", lambda raw=raw: mask_body(raw, "x-application/hl7-v2+er7")),
        )
        for step, fn in steps:
            r = _timed(fn, args.seconds)
            print(
                f"{step:10s} {name:34s} p50 {r['p50']:7.0f} µs  p95 {r['p95']:7.0f} µs"
                f"   (CPU p50 {r['cpu_p50']:.0f} µs; n={r['n']})"
            )
            figures[f"phi_{step}_{key}_p50_us"] = round(r["p50"], 1)
        print(f"{'':10s} {name}: {len(phi.values)} PHI values looked for")
    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
