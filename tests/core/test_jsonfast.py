"""core.jsonfast: orjson's speed with the standard library's answers, and the fallback without orjson."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfai_cli.core import jsonfast
from cfai_cli.core.openai.base import parse_body
from cfai_cli.core.sse import encode_sse
from cfai_cli.errors import InvalidRequest

# JSON values as the proxy meets them: 64-bit integers, finite floats, any text without lone surrogates.
_text = st.text(st.characters(blacklist_categories=("Cs",)))
_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | _text)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                       max_leaves=20)


def stdlib(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@pytest.fixture(params=["orjson", "json"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json":
        monkeypatch.setattr(jsonfast, "orjson", None)
    elif jsonfast.orjson is None:
        pytest.skip("orjson is not installed")
    return str(request.param)


def test_orjson_is_what_the_proxy_uses_on_cpython() -> None:
    # A dependency on CPython: without it the hot paths silently lose their speed.
    assert jsonfast.BACKEND == "orjson"


@settings(max_examples=300, deadline=None)
@given(_values)
def test_dumps_decodes_to_the_same_value_as_the_standard_library(value: Any) -> None:
    out = jsonfast.dumps(value)
    assert json.loads(out) == json.loads(stdlib(value))
    assert b"\n" not in out and b"\r" not in out  # one SSE line, always


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_text, _text | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.none(), max_size=6))
def test_dumps_writes_the_standard_librarys_bytes_for_text_and_integers(value: dict[str, Any]) -> None:
    assert jsonfast.dumps(value) == stdlib(value)


def test_the_cases_orjson_refuses_fall_back_to_valid_json(backend: str) -> None:
    big = {"seed": 2**70, "text": "caf\u00e9"}
    assert json.loads(jsonfast.dumps(big)) == big
    lone = {"text": "a\ud800b"}
    out = jsonfast.dumps(lone)
    assert out == b'{"text":"a\\ud800b"}'  # escaped, not unencodable
    assert jsonfast.dumps({1: "x"}) == b'{"1":"x"}'  # int keys as the standard library writes them
    assert jsonfast.dumps_str({"a": "é"}) == '{"a":"é"}'


def test_nan_is_never_written_as_an_invalid_token(backend: str) -> None:
    if backend == "orjson":
        assert jsonfast.dumps({"x": math.nan}) == b'{"x":null}'
    else:
        with pytest.raises(ValueError):
            jsonfast.dumps({"x": math.nan})


def test_loads_accepts_what_the_standard_library_accepts(backend: str) -> None:
    assert jsonfast.loads(b'{"a": [1, 2.5, "\\u00e9", null]}') == {"a": [1, 2.5, "é", None]}
    assert jsonfast.loads('{"t": "x"}') == {"t": "x"}
    assert math.isnan(jsonfast.loads(b'{"x": NaN}')["x"])  # orjson refuses; the stdlib's verdict wins
    assert jsonfast.loads(b'"\\ud800"') == "\ud800"


def test_loads_errors_are_the_standard_librarys(backend: str) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        jsonfast.loads(b'{"a": ')
    assert caught.value.msg == "Expecting value" and caught.value.colno == 7
    with pytest.raises(ValueError):
        jsonfast.loads(b'"\xff"')
    with pytest.raises(InvalidRequest, match=r"could not parse the JSON body.*line 1 column 7"):
        parse_body(b'{"a": ')


def test_loads_takes_utf8_bytes_only(backend: str) -> None:
    """json.loads(bytes) guesses UTF-16/32 from the first bytes; jsonfast never does, with either backend."""
    for encoding in ("utf-16", "utf-16-le", "utf-32-be"):
        with pytest.raises(ValueError):
            jsonfast.loads('{"a": 1}'.encode(encoding))
    with pytest.raises(ValueError):
        jsonfast.loads(b'\xef\xbb\xbf{"a": 1}')  # a BOM is parse_body's decision, not the decoder's
    assert jsonfast.loads('{"a": "é"}'.encode()) == {"a": "é"}


def test_sse_events_are_the_same_bytes_with_either_backend(backend: str) -> None:
    event = {"id": "chatcmpl-1", "choices": [{"delta": {"content": "a\r\nb \u2028 \"q\" \\ é 😀"}}]}
    assert encode_sse(event) == b"data: " + stdlib(event) + b"\n\n"
    assert encode_sse(event, event="response.output_text.delta") == (
        b"event: response.output_text.delta\ndata: " + stdlib(event) + b"\n\n")


def test_dumps_all_writes_what_dumps_writes_value_by_value(backend: str) -> None:
    # A batch orjson takes without OPT_NON_STR_KEYS, and batches with one value it refuses that way (an int
    # key, a RawJson, a big integer, a lone surrogate): each value's bytes are dumps' bytes.
    plain = [{"id": "c", "choices": [{"index": 0, "delta": {"content": "é \u2028 😀"}, "logprobs": None}]},
             {"usage": None, "n": 2**63 - 1, "x": 1.5, "l": [True, False]}]
    for odd in ({1: "x"}, {"v": jsonfast.RawJson(b"[1,2]")}, {"seed": 2**70}, {"text": "a\ud800b"}):
        for batch in (plain, [*plain, odd], [odd, *plain]):
            assert jsonfast.dumps_all(batch) == [jsonfast.dumps(value) for value in batch]
    assert jsonfast.dumps_all([]) == []
    assert jsonfast.dumps_all([{1: "x"}]) == [b'{"1":"x"}']


@settings(max_examples=200, deadline=None)
@given(st.lists(_values, max_size=5))
def test_dumps_all_is_dumps_of_each(values: list[Any]) -> None:
    assert jsonfast.dumps_all(values) == [jsonfast.dumps(value) for value in values]


def test_loads_all_is_loads_of_each(backend: str) -> None:
    datas = ['{"response":"é"}', '{"x": NaN}', "[1, 2.5]", '"\\ud800"']
    decoded = jsonfast.loads_all(datas)
    assert decoded[0] == {"response": "é"} and math.isnan(decoded[1]["x"]) and decoded[2:] == [[1, 2.5], "\ud800"]
    assert jsonfast.loads_all([]) == []
    with pytest.raises(json.JSONDecodeError) as caught:  # the standard library's verdict, as `loads` gives it
        jsonfast.loads_all(['{"a": 1}', '{"a": '])
    assert caught.value.msg == "Expecting value"


def test_measured_is_the_length_dumps_writes_without_writing_the_text(backend: str) -> None:
    raw, text = jsonfast.RawJson(b"[1.5,-2.25e-7]"), jsonfast.AsciiText("QUJD+/==")
    for value in ([{"index": 0, "embedding": raw}, {"index": 1, "embedding": raw}], {"b64_json": text},
                  [text, raw, {"é": "😀", "n": 2**63 - 1}], [jsonfast.RawJson(b"1")], {1: [text]}):
        written = jsonfast.dumps(value)
        assert json.loads(written) == json.loads(jsonfast.dumps(json.loads(written)))  # valid JSON
        # Without orjson the bytes themselves: the standard library has no placeholder to write.
        assert jsonfast.measured(value) == (len(written) if backend == "orjson" else written)
    assert jsonfast.dumps({"b64_json": text}) == b'{"b64_json":"QUJD+/=="}'
    # Nothing deferred, or something orjson refuses: the bytes themselves, as dumps writes them.
    for value in ([{"a": "é"}, 1.5, None], {"seed": 2**70, "v": raw}, {"text": "a\ud800b"}):
        assert jsonfast.measured(value) == jsonfast.dumps(value)


def test_pieces_join_raw_text_once_and_send_ascii_bytes_apart(backend: str) -> None:
    source = b"..[1.5,-2.25e-7]..QUJD+/==..[0.5]"
    raw, b64, last = jsonfast.RawJson(memoryview(source)[2:16]), memoryview(source)[18:26], memoryview(source)[28:]
    value = [{"v": raw, "i": 0}, {"b64": jsonfast.AsciiText(b64), "s": "é\x00"}, jsonfast.RawJson(last), {"n": 2**70}]
    written = jsonfast.dumps(value)
    assert json.loads(written)[:3] == [{"v": [1.5, -2.25e-7], "i": 0}, {"b64": "QUJD+/==", "s": "é\x00"}, [0.5]]
    for lead, inner in ((b"", False), (b",", True), (b"", True)):
        parts = jsonfast.pieces(value, lead=lead, inner=inner)
        assert b"".join(parts) == lead + (written[1:-1] if inner else written) and len(parts) == 1  # refused
    value.pop()  # without the big integer orjson refuses
    written = jsonfast.dumps(value)
    for lead, inner in ((b"", False), (b",", True)):
        parts = jsonfast.pieces(value, lead=lead, inner=inner)
        assert b"".join(parts) == lead + (written[1:-1] if inner else written)
        if backend == "orjson":
            assert len(parts) == 3 and parts[1] is b64 and b"[1.5,-2.25e-7]" in parts[0] and b"[0.5]" in parts[2]
    assert jsonfast.pieces([1.5], lead=b",", inner=True) == [b",1.5"]
