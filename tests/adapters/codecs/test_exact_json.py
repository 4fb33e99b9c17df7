"""``exact_json.encode`` (msgspec, on the pipeline's path) writes what ``exact_json.dumps`` writes:
the same text for every canonical Bundle the corpus converts to, decimals digit for digit."""

from __future__ import annotations

import pytest

from adapters import mapping
from adapters.codecs import exact_json, hl7v2
from tests.adapters.codecs._corpus import CORPUS, SKIP_REASON, corpus_files


def dumped(value) -> bytes:
    return exact_json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "value",
    [
        {"value": exact_json.loads("1.50"), "low": exact_json.loads("0.10"), "n": 3, "f": 2.5},
        {"value": exact_json.loads("-0.00"), "big": exact_json.loads("3.14159265358979323846")},
        {"text": 'Müller \u2028 tab\t quote" backslash\\ nul\x00 \x1f é 漢字 😀'},
        [None, True, False, 0, -7, 10**30, [], {}],
    ],
    ids=["decimals", "long-decimals", "text", "scalars"],
)
def test_encode_writes_what_dumps_writes(value):
    assert exact_json.encode(value) == dumped(value)
    assert exact_json.loads(exact_json.encode(value)) == value


def test_a_float_exponent_is_the_same_number():
    read = exact_json.loads(exact_json.encode({"x": 1e22, "y": 1e-7}))
    assert {k: float(v) for k, v in read.items()} == {"x": 1e22, "y": 1e-7}


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
def test_every_corpus_bundle_encodes_as_dumps_writes_it():
    compared = 0
    for name in corpus_files():
        try:
            bundle = mapping.convert(hl7v2.parse((CORPUS / name).read_bytes())).bundle
        except Exception:  # not every corpus file converts (malformed on purpose, batches)
            continue
        assert exact_json.encode(bundle) == dumped(bundle), name
        compared += 1
    assert compared >= 40  # of the corpus, these convert (48 when written)
