"""An embeddings model's JSON answer with its vectors kept as the text Workers AI sent, checked, not re-encoded.

Pure: standard library and core. bge answers `{"result": {"shape": [n, 768], "data": [[...], ...]}, ...}`, 1.6 MB
for a batch of 100. Type-checking 76,800 parsed floats in Python and writing them again with orjson was ~45 % of
the proxy's CPU for 2,048 inputs (bench/payload_cpu.py, issue 25, 2026-12-02). Here the text of `result.data` is
cut from the bytes as they came (as core.workers.image_cut does for images) and checked:

- it holds nothing but `0-9 + - . e E , [ ]` (no whitespace, strings, true/false/null or objects), every
  number has a decimal point (a JSON integer would be written `0`, not `0.0`, as the floats the proxy sends have
  always been; a number with an exponent and no point, `1e-07`, which a vector hardly ever holds, sends its
  batch the old way too), no list is nested deeper and none is empty: one `bytes.translate` deletes the digits
  and signs, and what is left, less `e E`, must be the outline of the lists parsed (`[[.,.],[.]]`);
- orjson parses it (the JSON grammar, numbers a double can hold) into a list of lists.

What passes is a list of non-empty lists of floats, as `parse_vectors` asks, and its text is valid JSON that
decodes to exactly those floats: the floats (for base64) and the text (written as it is with
`jsonfast.RawJson`) are kept. The rest of the document is parsed with a sentinel in the text's place that must
come back as `result.data`; anything else, and the whole document is decoded as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cfai_cli.core import jsonfast
from cfai_cli.core.workers.envelope import decode_json_result
from cfai_cli.core.workers.raw_member import JSON_SPACE, value_start

_KEY = b'"data"'
_DIGITS_AND_SIGNS = b"0123456789+-"
_EXPONENTS = b"eE"
_SENTINEL = "\x00cfai vectors\x00"  # no model sends NUL characters in a string
_SENTINEL_JSON = b'"\\u0000cfai vectors\\u0000"'


@dataclass(frozen=True, slots=True)
class CutVectors:
    """`result.data` of an embeddings answer: where its JSON text is in the answer's bytes, how many vectors it
    holds, and their floats (None when they were not wanted: `decode_vectors_result(floats=False)`)."""

    body: bytes
    start: int
    end: int
    count: int
    values: list[list[float]] | None

    @property
    def text(self) -> memoryview:
        return memoryview(self.body)[self.start:self.end]

    def json_vectors(self) -> list[jsonfast.RawJson]:
        """Each vector's own text, `[...]`, sliced out of the answer: the text is `[[...],[...]]` without spaces,
        so each ends at a `]`. Slices, not views of the answer: views kept each 1.6 MB answer until its last vector
        was sent, and freed together at the end they left the heap's top free, trimmed and faulted in again by the
        next request (+1,800 page faults a request through `cfai serve`: bench/payload_heap.py --embeddings)."""
        body, out, i = self.body, [], self.start + 1
        for _ in range(self.count):
            end = body.index(b"]", i) + 1
            out.append(jsonfast.RawJson(body[i:end]))
            i = end + 1
        return out


def cut_vectors(body: bytes) -> tuple[bytes, int, int] | None:
    """(the document with its first `"data"` member's array replaced by the sentinel, where that array's text
    starts and ends in `body`) when the value is an array without strings or objects in it; None otherwise.
    Which member it was is for the caller to check (the sentinel must come back as result.data)."""
    start = value_start(body, _KEY)
    if start < 0:
        return None
    if body[start:start + 1] != b"[":
        return None
    # An array of numbers holds no quote and no brace: the next one is after it (memchr, not a Python loop).
    ends = [i for i in (body.find(b'"', start), body.find(b"}", start)) if i >= 0]
    if not ends:
        return None
    end = min(ends)
    while end > start and body[end - 1] in JSON_SPACE:
        end -= 1
    if body[end - 1:end] == b",":  # another member follows
        end -= 1
        while end > start and body[end - 1] in JSON_SPACE:
            end -= 1
    if body[end - 1:end] != b"]":
        return None
    return body[:start] + _SENTINEL_JSON + body[end:], start, end


def checked_vectors(body: bytes, start: int = 0, end: int | None = None) -> list[list[float]] | None:
    """The floats of `body[start:end]` (the whole of it by default) when that text passes the checks of the module
    docstring; None otherwise. The text is not copied out: translate runs over the whole of `body` (what is left
    of the bytes around the text is cut off its result: deleting keeps the order) and orjson reads a view."""
    end = len(body) if end is None else end
    rest = body.translate(None, _DIGITS_AND_SIGNS)  # what is left of `[[0.1,-0.2e-5],[…]]`: `[[.,.e],[…]]`
    if start or end != len(body):
        before = len(body[:start].translate(None, _DIGITS_AND_SIGNS))
        rest = rest[before:len(rest) - len(body[end:].translate(None, _DIGITS_AND_SIGNS))]
    try:
        values = jsonfast.loads_strict(memoryview(body)[start:end])
    except ValueError:
        return None
    if not isinstance(values, list) or not values or not all(type(vector) is list for vector in values):
        return None
    # What is left, less the exponents' letters, must be the outline of those lists with one point a number:
    # only `[ ] , .` and `e E` (no whitespace, strings, literals or objects), no list nested deeper, no empty
    # vector, and as many points as numbers (a JSON number has at most one), compared at C speed in one go.
    # The same verdicts as counting brackets, points and commas in it (tests/core/test_vector_cut.py), ~3 ms
    # less for 2,048 vectors (bench/payload_cpu.py, issue 25 round 9).
    if rest.translate(None, _EXPONENTS) != _outline(list(map(len, values))):
        return None
    return values


def _outline(lengths: list[int]) -> bytes:
    """`[[.,.],[.]]` for lengths [2, 1]: the text of lists of that many numbers, digits, signs and exponents
    deleted. An empty list's outline `[.]` is no list's text (it would be `[]`), so empty vectors never match."""
    return b"[" + b",".join([b"[" + b".," * (n - 1) + b".]" for n in lengths]) + b"]"


def decode_vectors_result(status: int, content_type: str, body: bytes, headers: Mapping[str, str], *,
                          model: str | None = None, floats: bool = True) -> Any:
    """`decode_json_result`, with `result.data` as `CutVectors` when it passes the checks. `floats=False`: the
    caller wants the vectors' text only (the proxy's answers), so their floats are let go as soon as they are
    checked: held while the batch was handled, their 100 lists were traversed by every collection of the
    garbage collector's youngest generation meanwhile (~0.9 ms each, ~7 a request), and four batches' floats
    were held at once (issue 25, round 9)."""
    cut = cut_vectors(body) if status < 400 and body[:1] == b"{" else None
    values = checked_vectors(body, cut[1], cut[2]) if cut is not None else None
    if cut is not None and values is not None:
        try:
            result = decode_json_result(status, content_type, cut[0], headers, model=model)
        except Exception:  # the cut changed what the document says: judge the whole of it below
            result = None
        if isinstance(result, dict) and result.get("data") == _SENTINEL:
            result["data"] = CutVectors(body, cut[1], cut[2], len(values), values if floats else None)
            return result
    return decode_json_result(status, content_type, body, headers, model=model)
