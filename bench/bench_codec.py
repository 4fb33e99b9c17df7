"""Cost of the HL7 v2 codec: the hot-path reader against hl7apy, and the off-path structure tools.

Messages: an ADT^A01 of about 1 KB built here, and a 10 KB ORU^R01 (the LRI CBC sample of the
shared corpus, 29 OBX; a built ORU of the same shape when the corpus is absent).

Printed: `parse` p50/p95 in µs of wall time and of this thread's CPU time (the machine is shared;
CPU time is what the code costs), messages/s on one core, `split_batch` per message, then
`describe` and `validate_structure` (hl7apy's tables, warm and cold) and hl7apy's own
`parse_message` on the same bytes, which is what the hot path avoids. Last line: ``BENCH {json}``.

    python -m bench.bench_codec [--seconds 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from adapters.codecs import hl7v2, hl7v2_batch, hl7v2_structure

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("HL7_CORPUS") or REPO.parent / "shared" / "corpus")

ADT = (
    "\r".join(
        [
            "MSH|^~\\&|REGADT|GOOD HEALTH|EHR|HUB|20240301101500+0100||ADT^A01^ADT_A01|MSG-1|P|2.5.1",
            "EVN|A01|20240301101500+0100",
            "PID|1||555123^^^GOOD HEALTH^MR~999887777^^^SSA^SS||Everyman^Adam^Alan^Jr^Mr||19610615|M|||"
            "2222 Home Street^Apt 4^Greensboro^NC^27401^USA^H||^PRN^PH^^1^336^5551234|||M|||4000776^^^GH^AN",
            "PD1|||Good Health Clinic^^1234|88^Hippocrates^Harold^H^^Dr^MD",
            "NK1|1|Everyman^Eve^E|SPO^Spouse^HL70063|2222 Home Street^^Greensboro^NC^27401^USA",
            "PV1|1|I|4E^401^B^GOOD HEALTH|E|||1234^Attend^Ann^^^Dr^MD|5678^Refer^Rob^^^Dr^MD||MED|||||||"
            "1234^Attend^Ann^^^Dr^MD|IP||V100200^^^GH^VN|||||||||||||||||||||GOOD HEALTH|||||20240301090000",
            "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives~Wheezing|20100101",
            "DG1|1||I21.4^NSTEMI^I10|||A",
            "IN1|1|BCBS-PPO^Blue PPO|BCBS123|Blue Cross Blue Shield|PO Box 1^^Durham^NC^27701^USA",
        ]
    )
    + "\r"
)


def _oru() -> tuple[str, bytes]:
    sample = CORPUS / "oru" / "fhirconv_oru_r01_v251_lri_cbc.hl7"
    if sample.is_file():
        return "ORU 10 KB (corpus LRI CBC, 29 OBX)", sample.read_bytes()
    obx = [
        f"OBX|{i}|NM|{1000 + i}-{i % 10}^Analyte number {i} [Mass/volume] in Blood^LN||{i}.{i % 7}|"
        f"g/dL^gram per deciliter^UCUM|{i}-{i + 9}|N|||F|||20240301101500|||||20240301101600||||"
        f"Lab^^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^01D0000000"
        for i in range(1, 30)
    ]
    text = (
        "MSH|^~\\&|LAB|GH|EHR|HUB|20240301101500||ORU^R01^ORU_R01|ORU-1|P|2.5.1\r"
        "PID|1||555123^^^GH^MR||Everyman^Adam||19610615|M\r"
        "OBR|1|ORD1|FIL1|58410-2^CBC panel - Blood by Automated count^LN|||20240301101500\r"
        + "\r".join(obx)
        + "\r"
    )
    return "ORU 10 KB (built, 29 OBX)", text.encode()


def _timed(fn: Callable[[], object], seconds: float) -> dict[str, float]:
    wall: list[float] = []
    cpu: list[float] = []
    gc.collect()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(wall) < 20:
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    wall.sort()
    cpu.sort()
    n = len(wall)
    return {
        "n": n,
        "p50": wall[n // 2] * 1e6,
        "p95": wall[int(n * 0.95)] * 1e6,
        "cpu_p50": cpu[n // 2] * 1e6,
        "cpu_p95": cpu[int(n * 0.95)] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    oru_name, oru = _oru()
    adt = ADT.encode()
    figures: dict[str, float] = {}

    for key, name, data in (("adt", "ADT 1 KB", adt), ("oru10k", oru_name, oru)):
        r = _timed(lambda data=data: hl7v2.parse(data), args.seconds)
        print(
            f"parse {name:34s} p50 {r['p50']:6.0f} µs  p95 {r['p95']:6.0f} µs   "
            f"(CPU p50 {r['cpu_p50']:.0f} µs, p95 {r['cpu_p95']:.0f} µs; n={r['n']})"
        )
        figures[f"codec_parse_{key}_p50_us"] = round(r["p50"], 1)
        figures[f"codec_parse_{key}_p95_us"] = round(r["p95"], 1)
        figures[f"codec_parse_{key}_cpu_p50_us"] = round(r["cpu_p50"], 1)

    count, c0, w0 = 0, time.thread_time(), time.perf_counter()
    while time.perf_counter() - w0 < args.seconds:
        hl7v2.parse(adt)
        hl7v2.parse(oru)
        count += 2
    per_s = count / (time.thread_time() - c0)
    print(f"one core, ADT and ORU 10 KB alternating: {per_s:.0f} messages/s of CPU time")
    figures["codec_parse_msgs_per_s"] = round(per_s)

    batch = b"FHS|^~\\&\rBHS|^~\\&\r" + adt * 50 + b"BTS|50\rFTS|1\r"
    r = _timed(lambda: hl7v2_batch.split_batch(batch), args.seconds / 2)
    print(f"split_batch 50 ADT: p50 {r['p50'] / 50:.1f} µs per message")
    figures["codec_split_batch_per_msg_us"] = round(r["p50"] / 50, 1)

    message = hl7v2.parse(oru)
    c0 = time.perf_counter()
    hl7v2_structure.describe(message)
    cold = (time.perf_counter() - c0) * 1e3
    for key, fn in (
        ("describe", lambda: hl7v2_structure.describe(message)),
        ("validate", lambda: hl7v2_structure.validate_structure(message)),
    ):
        r = _timed(fn, args.seconds / 2)
        print(f"{key:8s} {oru_name}: p50 {r['p50'] / 1e3:.2f} ms (CPU {r['cpu_p50'] / 1e3:.2f} ms)")
        figures[f"codec_{key}_oru10k_ms"] = round(r["p50"] / 1e3, 2)
    print(f"describe, first call (loads the version's tables): {cold:.0f} ms")
    figures["codec_describe_cold_ms"] = round(cold)

    from hl7apy.parser import parse_message

    warnings.simplefilter("ignore")
    for key, name, data in (("adt", "ADT 1 KB", adt), ("oru10k", oru_name, oru)):
        text = hl7v2.decode_bytes(data)[0]
        parse_message(text, find_groups=True)  # warm its tables
        r = _timed(lambda text=text: parse_message(text, find_groups=True), args.seconds)
        print(
            f"hl7apy parse_message {name:34s} p50 {r['p50'] / 1e3:6.1f} ms (CPU {r['cpu_p50'] / 1e3:.1f} ms)"
        )
        figures[f"codec_hl7apy_parse_{key}_ms"] = round(r["p50"] / 1e3, 2)

    print("BENCH " + json.dumps(figures))


if __name__ == "__main__":
    main()
