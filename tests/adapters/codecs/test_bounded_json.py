"""The bounded JSON reader: depth and size refused before parsing, with the reason; everything
else as json.loads reads it."""

from __future__ import annotations

import json

import pytest

from adapters.codecs import bounded_json
from adapters.codecs.bounded_json import MAX_DEPTH, JsonLimitError


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def test_depth_up_to_the_limit_is_read():
    assert bounded_json.loads(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    objects = '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH
    assert bounded_json.loads(objects) == json.loads(objects)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 200_000])
def test_deeper_is_refused_naming_the_limit(depth):
    with pytest.raises(JsonLimitError, match=f"nested deeper than {MAX_DEPTH} levels") as caught:
        bounded_json.loads(nested(depth))
    assert caught.value.limit == "depth"


def test_mixed_arrays_and_objects_count_as_one_depth():
    text = '{"a":[' * 40 + "1" + "]}" * 40  # 80 levels
    with pytest.raises(JsonLimitError):
        bounded_json.loads(text)
    assert bounded_json.loads(text, max_depth=80) is not None


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"note": "[" * 1000 + '\\"]{' * 50, "list": [1, [2, [3]]]})
    assert bounded_json.loads(text) == json.loads(text)


def test_many_siblings_are_shallow():
    text = json.dumps([{"a": [i]} for i in range(10_000)])
    assert len(bounded_json.loads(text)) == 10_000


def test_unclosed_nesting_is_refused_without_a_recursion_error():
    with pytest.raises(ValueError):
        bounded_json.loads(b"[" * 200_000)
    with pytest.raises(json.JSONDecodeError):
        bounded_json.loads(b'{"a": [1, 2}')


def test_size_is_bounded_when_asked():
    with pytest.raises(JsonLimitError, match="larger than 10 bytes") as caught:
        bounded_json.loads(b'{"a": "0123456789"}', max_bytes=10)
    assert caught.value.limit == "size"


def test_the_decoder_class_says_too_deep_as_a_decode_error():
    with pytest.raises(json.JSONDecodeError, match="nested deeper"):
        json.loads(nested(MAX_DEPTH + 1).decode(), cls=bounded_json.BoundedDecoder)
    assert json.loads('{"a": [1]}', cls=bounded_json.BoundedDecoder) == {"a": [1]}


def test_brackets_in_strings_cannot_hide_real_depth():
    # Each level opens after a string holding "]" and closes after one holding "[": counting
    # every bracket would see pairs one level deep; the real nesting is 200 levels.
    depth = 200
    text = '["]", ' * depth + "1" + ', "["]' * depth
    assert json.loads(text)  # valid JSON
    with pytest.raises(JsonLimitError):
        bounded_json.loads(text)


def test_escaped_quotes_and_backslashes_do_not_end_a_string_early():
    text = json.dumps({"a": 'x\\"[[[[' * 30, "b": "\\\\", "c": [[['\\\\\\"]']]]})
    assert bounded_json.loads(text) == json.loads(text)
    deep = '{"a": "\\\\", "b": ' + "[" * 100 + "]" * 100 + "}"
    with pytest.raises(JsonLimitError):
        bounded_json.loads(deep)
