"""core.workers.vector_cut: an embeddings answer's vectors are kept as the text Workers AI sent when it is
nothing but floats, the rest parsed; every answer it cannot vouch for is decoded whole, as before."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cfai_cli.core import jsonfast
from cfai_cli.core.translate.embeddings import parse_vectors
from cfai_cli.core.workers.envelope import decode_json_result
from cfai_cli.core.workers.vector_cut import (
    CutVectors,
    checked_vectors,
    counted_vectors,
    cut_vectors,
    decode_vectors_result,
)
from cfai_cli.errors import CfaiError, UpstreamError

JSON = "application/json"
VECTORS = [[0.012, -0.5, 1.5e-07, 3.0], [-0.0, 2.5, 1.25e-300, 0.125]]


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def envelope(result: Any, **extra: Any) -> bytes:
    return compact({"result": result, "success": True, "errors": [], "messages": [], **extra})


def bge(data: Any, **extra: Any) -> bytes:
    return envelope({"shape": [2, 4], "data": data, "pooling": "mean"}, **extra)


def decoded(body: bytes, status: int = 200) -> Any:
    """What either decoder gives: the result, or the error it raised."""
    try:
        return decode_json_result(status, JSON, body, {})
    except CfaiError as exc:
        return type(exc), exc.message


@pytest.mark.parametrize("body", [
    bge(VECTORS),
    compact({"result": {"data": VECTORS}, "success": True}),               # data last: a brace after it
    bge(VECTORS).replace(b'"data":', b'"data"  :\n '),                     # spaces around the colon
    bge(VECTORS).replace(b'],"pooling"', b'] ,\n"pooling"'),               # and after the array
    bge(VECTORS, messages=[{"text": 'the "data" of it'}]),                 # an escaped "data" later on
    compact({"success": True, "result": {"data": VECTORS}}),
])
def test_float_vectors_are_kept_as_their_text_and_the_rest_decoded_as_before(body: bytes) -> None:
    result = decode_vectors_result(200, JSON, body, {})
    cut = result["data"]
    assert isinstance(cut, CutVectors)
    assert cut.text == compact(VECTORS) and cut.values == VECTORS
    assert {**result, "data": VECTORS} == decode_json_result(200, JSON, body, {})
    assert [v.json for v in cut.json_vectors()] == [compact(v) for v in VECTORS]
    assert parse_vectors(result, 2) == VECTORS
    assert parse_vectors(result, 2, as_json=True) == cut.json_vectors()
    with pytest.raises(UpstreamError, match="returned 2 vectors for 3 inputs"):
        parse_vectors(result, 3, as_json=True)
    # For their text only (the proxy's answers): the same text and count, and no floats held.
    text_only = decode_vectors_result(200, JSON, body, {}, floats=False)
    assert {**text_only, "data": None} == {**result, "data": None}
    assert text_only["data"].values is None and text_only["data"].count == 2
    assert parse_vectors(text_only, 2, as_json=True) == cut.json_vectors()
    with pytest.raises(UpstreamError, match="returned 2 vectors for 3 inputs"):
        parse_vectors(text_only, 3, as_json=True)
    with pytest.raises(TypeError):
        parse_vectors(text_only, 2)


@pytest.mark.parametrize("body", [
    bge([[1, 0.5], [0.25, 0.5]]),                                         # an integer: written 1.0 as before
    bge([[0.5, 1], [0.25, 0.5]]),
    bge([[0.5, 0.75], [0.25, 2]]),
    bge([[0.5, 0, 0.75]]),
    bge([[0.5, 1e-07], [0.25, 0.5]]),                                    # an exponent without a point
    bge([[0.5], []]),                                                     # an empty vector: refused as before
    bge([[0.5, [0.25]], [0.5]]),                                          # nested
    bge([0.5, 0.25]),                                                     # not a list of lists
    bge([[0.5, True], [0.5, 0.25]]),
    bge([[0.5, None], [0.5, 0.25]]),
    bge([[0.5, "0.25"], [0.5, 0.25]]),
    bge([[0.5, {"x": 1.0}], [0.5, 0.25]]),
    bge({"x": [[0.5]]}),                                                  # not an array
    bge(VECTORS).replace(b"0.012,", b"0.012, "),                          # a space inside: judged whole
    bge(VECTORS).replace(b"0.012", b"1e400"),                             # beyond a double
    bge(VECTORS).replace(b"0.012", b"01.2"),                              # not JSON
    bge(VECTORS).replace(b"0.012", b"-.5"),
    bge(VECTORS).replace(b"0.012", b"1.e5"),
    bge(VECTORS).replace(b"0.012,", b"0.012,,"),
    bge(VECTORS) + b"garbage",                                            # not JSON once whole
    bge(VECTORS).replace(b'"data"', b'"data2"'),                          # no result.data at all
    envelope({"other": {"data": VECTORS}, "data": [[0.5]]}),              # the first "data" is not result.data
    b'{"result": {"data": [[0.5]], "data": [[0.25]]}}',                    # twice: JSON parsers keep the last
    bge("\u0000cfai vectors\u0000"),                                      # the sentinel itself
    envelope({"data": VECTORS}).replace(b'"success":true', b'"success":false'),
    compact({"result": {"data": VECTORS}, "success": True}).replace(b"]]}", b"]]"),  # truncated
])
def test_anything_else_is_decoded_whole_as_before(body: bytes) -> None:
    try:
        result = decode_vectors_result(200, JSON, body, {})
    except CfaiError as exc:
        result = type(exc), exc.message
    assert not (isinstance(result, dict) and isinstance(result.get("data"), CutVectors))
    assert result == decoded(body)


def test_error_answers_are_never_cut() -> None:
    body = compact({"result": {"data": VECTORS}, "success": False, "errors": [{"code": 3030, "message": "long"}]})
    for status in (200, 400):
        with pytest.raises(CfaiError) as exc:
            decode_vectors_result(status, JSON, body, {})
        assert (type(exc.value), exc.value.message) == decoded(body, status)


def test_the_cut_and_its_checks() -> None:
    assert cut_vectors(b'{"data":[[1.5]],"x":"y"}') == (b'{"data":"\\u0000cfai vectors\\u0000","x":"y"}', 8, 15)
    assert cut_vectors(b'{"data":[[1.5]]}') == (b'{"data":"\\u0000cfai vectors\\u0000"}', 8, 15)
    assert cut_vectors(b'{"data":"x"}') is None and cut_vectors(b'{"x":[[1.5]]}') is None
    assert checked_vectors(b"[[1.5,-2.0E+3],[0.5e-1]]") == [[1.5, -2000.0], [0.05]]
    for text in (b"[[1.5,2]]", b"[[1.5],[]]", b"[[1.5,[2.5]]]", b"[[1.5, 2.5]]", b"[[1.5,NaN]]", b"[1.5]",
                 b"[[1.5,1e-7]]", b"[[],[1.5,2.5]]", b"[[1.5,2.5],[]]"):
        assert checked_vectors(text) is None, text


@pytest.mark.parametrize("backend", ["orjson", "json"])
def test_raw_json_is_written_as_it_is(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    if backend == "json":
        monkeypatch.setattr(jsonfast, "orjson", None)
    value = {"embedding": jsonfast.RawJson(b"[1.5E-7,0.25]"), "n": [1.0]}
    out = jsonfast.dumps(value)
    assert json.loads(out) == {"embedding": [1.5e-7, 0.25], "n": [1.0]}
    if backend == "orjson":
        assert out == b'{"embedding":[1.5E-7,0.25],"n":[1.0]}'
    with pytest.raises((TypeError, ValueError)):
        jsonfast.dumps({"x": object()})


def _counted(text: bytes) -> list[list[float]] | None:
    """The check as it was before round 9 (brackets, points and commas counted in what translate left): the
    reference the outline comparison must agree with on every text."""
    rest = text.translate(None, b"0123456789+-")
    if rest.translate(None, b".eE,[]"):
        return None
    try:
        values = jsonfast.loads_strict(text)
    except ValueError:
        return None
    if not isinstance(values, list) or not all(type(vector) is list for vector in values):
        return None
    if rest.count(b"[") != len(values) + 1 or rest.count(b".") != rest.count(b",") + 1:
        return None
    return values


def _outlined(text: bytes) -> list[list[float]] | None:
    """The check as it was in round 9 (one translate, and what it left, less `e E`, compared with the outline of
    the lists parsed): the second reference."""
    rest = text.translate(None, b"0123456789+-")
    try:
        values = jsonfast.loads_strict(text)
    except ValueError:
        return None
    if not isinstance(values, list) or not values or not all(type(vector) is list for vector in values):
        return None
    outline = b"[" + b",".join([b"[" + b".," * (len(v) - 1) + b".]" for v in values]) + b"]"
    return values if rest.translate(None, b"eE") == outline else None


_SEEDS = [b"[[1.5,-2.0E+3],[0.5e-1]]", b"[[0.0,-0.25,1.0e-7],[3.5],[2.5,1.5]]", b"[[1.5]]", b"[[-0.5e+12,7.25]]"]
_TABLE = [
    b"[]", b"[[]]", b"[[],[]]", b"[[1.5],[]]", b"[[],[1.5]]", b"[1.5]", b"[[1.5,[2.5]]]", b"[[[1.5]]]",
    b"[[1.5,2]]", b"[[1]]", b"[[1e5]]", b"[[1.5,1e-7]]", b"[[1.5, 2.5]]", b"[ [1.5]]", b"[[1.5]]\n", b"\t[[1.5]]",
    b"[[1.5,NaN]]", b"[[1.5,Infinity]]", b"[[1.5,-Infinity]]", b"[[1e400]]", b"[[1.0e400]]", b"[[-1.0E+309]]",
    b"[[1.0e-400]]", b"[[" + b"1" * 400 + b".0]]", b"[[123456789012345678901234567890]]", b"[[-0]]", b"[[-0.0]]",
    b"[[01.5]]", b"[[-.5]]", b"[[1.e5]]", b"[[1.5e]]", b"[[1.5e+]]", b"[[+1.5]]", b"[[1.5.5]]", b"[[1.5e5e5]]",
    b"[[1.5,,2.5]]", b"[[1.5,]]", b"[[,1.5]]", b"[[1.5]],", b"[[1.5]][", b"[[1.5]", b"[[1.5]]]", b"[[1.5][2.5]]",
    b'[[1.5,"2.5"]]', b"[[1.5,true]]", b"[[1.5,null]]", b'[[1.5,{"a":1.5}]]', b"[[1.5],{}]", b"[[1.5,2.5e.5]]",
    b"[[1.5E5.5]]", b"[[0.5,1.5e-05,2.5E+2]]", b"[[-1.5,-2.5e-3],[-0.0]]", b"[[1..5]]", b"[[1.5--2]]",
    b"[[1.5-2.5]]", b"[[1.5+2.5]]", b"[[1.5e+-2]]", b"[[1.5,2.5],[1.5,[]]]", b"[[1.5],[2.5,3.5,4.5]]",
    b"[[1.5,false]]", b"[[true]]", b"[[1.5],[null]]", b"[[1.5]\t]", b"[[1.5\r]]", b"[[1.5],\r\n[2.5]]",
    b"[[1.5],[2.5,[3.5]]]", b"[[1.5,[2.5]],[3.5]]", b"[[[1.5],2.5]]", b"[[1.5],[[2.5]]]", b"[[1.5,[]],[2.5]]",
    b"[[1.5],[2.5]],[3.5]", b'[[1.5],["a"]]', b'[[1.5,"u"]]', b"[[1.5,-0.0e0]]", b"[[1.5E0,2.5e+0]]",
    b"[[1.5,{}]]", b"[[{},1.5]]", b"[[1,{}],[2]]",
]


def _mutations(seed: bytes) -> list[bytes]:
    """Every text one byte away from `seed` (replaced, inserted or deleted) over the bytes that matter here."""
    alphabet = b"0123456789+-.eE,[] \n\r\t\"tfnua{}:x\x00"
    out = []
    for i in range(len(seed) + 1):
        out.append(seed[:i] + seed[i + 1:])
        for byte in alphabet:
            out.append(seed[:i] + bytes([byte]) + seed[i + 1:])
            out.append(seed[:i] + bytes([byte]) + seed[i:])
    return out


def test_the_check_refuses_and_accepts_exactly_what_the_outline_and_the_counts_did() -> None:
    texts = _TABLE + [m for seed in _SEEDS for m in _mutations(seed)]
    accepted = 0
    for text in texts:
        expected = _counted(text)
        assert _outlined(text) == expected, text
        assert checked_vectors(text) == expected, text
        assert checked_vectors(bytearray(text)) == expected, text
        # Checked in place inside a document, with digits, signs, points and exponents' letters around it.
        before, after = b'{"shape":[-1.5e+3,2],"E":1.0,"data":', b',"pooling":"mean","n":-0.5e7}'
        assert checked_vectors(before + text + after, len(before), len(before) + len(text)) == expected, text
        accepted += expected is not None
    assert 50 < accepted < len(texts) // 4  # both verdicts are exercised, many times


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _numbers(text: bytes) -> int | None:
    """`counted_vectors`' reference, by other means: Python's json (NaN and infinities by name refused) reads a
    non-empty list of non-empty lists of numbers (not booleans), the text has no JSON whitespace, and no exponent
    has three digits or more past its leading zeros."""
    if any(byte in text for byte in b" \n\r\t") or re.search(rb"[eE][-+]?0*[1-9][0-9]{2}", text):
        return None
    try:
        values = json.loads(text, parse_constant=_refuse)
    except ValueError:
        return None
    numbers = all(type(vector) is list and vector and all(type(x) in (int, float) for x in vector)
                  for vector in values) if type(values) is list else False
    return len(values) if values and numbers else None


_NUMBER_SEEDS = [b"[[1.5e-07,0],[-2,0.5E+12]]", b"[[0,1],[1e5]]", b"[[1.0e-099],[2E+00100]]"]


def test_the_text_check_counts_exactly_the_lists_of_numbers() -> None:
    texts = _TABLE + [m for seed in _SEEDS + _NUMBER_SEEDS for m in _mutations(seed)]
    accepted = integers = 0
    for text in texts:
        expected = _numbers(text)
        assert counted_vectors(text) == expected, text
        before, after = b'{"shape":[-1.5e+3,2],"E":1.0,"data":', b',"pooling":"mean","n":-0.5e7}'
        assert counted_vectors(before + text + after, len(before), len(before) + len(text)) == expected, text
        # Everything the strict check passes, this one passes too, but for exponents of three digits.
        strict = checked_vectors(text)
        if strict is not None and not re.search(rb"[eE][-+]?0*[1-9][0-9]{2}", text):
            assert expected == len(strict), text
        accepted += expected is not None
        integers += expected is not None and strict is None
    assert 50 < accepted < len(texts) // 4 and integers > 20  # both verdicts, and what only this check passes


@pytest.mark.parametrize(("data", "written"), [
    (b"[[1,0.5],[0.25,-0]]", [b"[1,0.5]", b"[0.25,-0]"]),             # integers, as Workers AI wrote them
    (b"[[0.5,1e-07],[1.5E+20]]", [b"[0.5,1e-07]", b"[1.5E+20]"]),     # exponents without a point
])
def test_for_their_text_any_json_number_is_kept_as_written(data: bytes, written: list[bytes]) -> None:
    body = bge(json.loads(data)).replace(compact(json.loads(data)), data)
    assert data in body
    text_only = decode_vectors_result(200, JSON, body, {}, floats=False)
    cut = text_only["data"]
    assert isinstance(cut, CutVectors) and cut.values is None and cut.count == len(written)
    assert [v.json for v in parse_vectors(text_only, len(written), as_json=True)] == written
    whole = decode_json_result(200, JSON, body, {})
    assert {**text_only, "data": None} == {**whole, "data": None}
    assert [json.loads(w) for w in written] == parse_vectors(whole, len(written))  # the same numbers
    # With their floats (base64), the strict check refuses them: decoded whole, as before.
    assert not isinstance(decode_vectors_result(200, JSON, body, {})["data"], CutVectors)


@pytest.mark.parametrize("body", [
    bge([[0.5], []]), bge([[0.5, [0.25]], [0.5]]), bge([0.5, 0.25]), bge([[0.5, True], [0.5, 0.25]]),
    bge([[0.5, None], [0.5, 0.25]]), bge([[0.5, "0.25"], [0.5, 0.25]]), bge([[0.5, {}], [0.5, 0.25]]),
    bge(VECTORS).replace(b"0.012,", b"0.012, "), bge(VECTORS).replace(b"0.012", b"1e400"),
    bge(VECTORS).replace(b"0.012", b"01.2"), bge(VECTORS) + b"garbage",
    envelope({"other": {"data": VECTORS}, "data": [[0.5]]}), b'{"result": {"data": [[0.5]], "data": [[0.25]]}}',
])
def test_for_their_text_anything_else_is_decoded_whole_as_before(body: bytes) -> None:
    try:
        result = decode_vectors_result(200, JSON, body, {}, floats=False)
    except CfaiError as exc:
        result = type(exc), exc.message
    assert not (isinstance(result, dict) and isinstance(result.get("data"), CutVectors))
    assert result == decoded(body)


def test_without_msgspec_the_strict_check_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonfast, "_json_skipper", lambda: None)
    assert jsonfast.is_json(b"[[1]]") is None and counted_vectors(b"[[1]]") is None
    body = bge([[1, 0.5], [0.25, 0.5]])
    assert decode_vectors_result(200, JSON, body, {}, floats=False) == decoded(body)  # an integer: whole
    cut = decode_vectors_result(200, JSON, bge(VECTORS), {}, floats=False)["data"]
    assert isinstance(cut, CutVectors) and cut.count == 2 and cut.values is None


def test_is_json_checks_the_grammar_without_building_the_values() -> None:
    assert jsonfast.is_json(b'[[1.5,2],{"a":[]},"x",null]') is True
    assert jsonfast.is_json(memoryview(b'xx[1,[2]]yy')[2:-2]) is True
    for text in (b"[1,]", b"[01]", b"[1.e5]", b"[NaN]", b"[1] x", b'{"a":1', b'"[1]', b"[[1]", b"[\"\\x\"]", b""):
        assert jsonfast.is_json(text) is False, text


def test_the_text_check_builds_nothing_however_many_items_an_answer_holds() -> None:
    """Memory stays flat: no Python object an item (a list of raw items took ~28 bytes a byte of `[1,1,…]`)."""
    import tracemalloc

    many = b",".join([b"1"] * 2_000_000)
    counted_vectors(b"[[1]]")  # msgspec imported and its decoder made before measuring
    for text, expected in ((b"[[" + many + b"]]", 1), (b"[" + many + b"]", None)):
        tracemalloc.start()
        try:
            assert counted_vectors(text) == expected
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 100_000, peak  # bytes, for a 4 MB text
