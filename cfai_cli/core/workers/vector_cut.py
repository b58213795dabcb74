"""An embeddings model's JSON answer with its vectors kept as the text Workers AI sent, checked, not re-encoded.

Pure: standard library and core. bge answers `{"result": {"shape": [n, 768], "data": [[...], ...]}, ...}`, 1.6 MB
for a batch of 100. Type-checking 76,800 parsed floats in Python and writing them again with orjson was ~45 % of
the proxy's CPU for 2,048 inputs (bench/payload_cpu.py, issue 25, 2026-12-02). Here the text of `result.data` is
cut from the bytes as they came (as core.workers.image_cut does for images) and checked:

- orjson parses it (the JSON grammar, numbers a double can hold) into a list of non-empty lists;
- it holds no whitespace and no quote (no strings, no object but `{}`), no list is nested deeper (each vector's
  text ends at its first `]`), and as many decimal points as items: every item is a number with a decimal point
  (`{}`, true, false and null hold none). A JSON integer would be written `0`, not `0.0`, as the floats the
  proxy sends have always been; a number with an exponent and no point, `1e-07`, which a vector hardly ever
  holds, sends its batch the old way too. Searches (memchr) and one count, not a pass rewriting every byte.

When only the vectors' text is wanted (the proxy's float answers: `floats=False`), `counted_vectors` checks
instead, without making a float: msgspec checks the whole JSON grammar of the text (`jsonfast.is_json`),
and searches and a walk of the vectors' `]` check that it is a list of non-empty lists of numbers (any JSON
number: `0`, `1e-07` and `0.5` alike, as Workers AI's output schema says, "items": {"type": "number"}), with no
exponent of three digits or more (beyond a double, or near its edge: `checked_vectors` judges those). Here a
vector holding a whole number or a small one is written as Workers AI wrote it (`0`, `1.2e-07`), which every
JSON parser reads as the same number; the old way wrote them `0.0` and `1.2e-7`. Not caught: a number of more
than 308 digits before its point and no exponent, which no serializer of doubles writes; it is passed as written.

What `checked_vectors` passes is a list of non-empty lists of floats, as `parse_vectors` asks, and its text is
valid JSON that decodes to exactly those floats: the floats (for base64) and the text (written as it is with
`jsonfast.RawJson`) are kept; `counted_vectors` keeps the text and the count. The rest of the document is parsed
with a sentinel in the text's place that must come back as `result.data`; anything else, and the whole document is
decoded as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cfai_cli.core import jsonfast
from cfai_cli.core.workers.envelope import decode_json_result
from cfai_cli.core.workers.raw_member import JSON_SPACE, value_start

_KEY = b'"data"'
_REFUSED = (b" ", b"\n", b"\r", b"\t", b'"')
_COMMA = ord(",")
_OPEN, _EMPTY = b"[]"
_SENTINEL = "\x00cfai vectors\x00"  # no model sends NUL characters in a string
_SENTINEL_JSON = b'"\\u0000cfai vectors\\u0000"'


@dataclass(frozen=True, slots=True)
class CutVectors:
    """`result.data` of an embeddings answer: where its JSON text is in the answer's bytes, how many vectors it
    holds, and their floats (None when they were not wanted: `decode_vectors_result(floats=False)`)."""

    body: bytes | bytearray  # a big answer is the buffer it was received into (upstream.lean's read_buffer)
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
        body, view, out, i = self.body, memoryview(self.body), [], self.start + 1
        for _ in range(self.count):
            end = body.index(b"]", i) + 1
            out.append(jsonfast.RawJson(bytes(view[i:end])))  # bytes: orjson.Fragment takes no bytearray
            i = end + 1
        return out


def cut_vectors(body: bytes | bytearray) -> tuple[bytes, int, int] | None:
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
    return bytes(body[:start]) + _SENTINEL_JSON + bytes(body[end:]), start, end


def _holds_any(body: bytes | bytearray, start: int, end: int, refused: tuple[bytes, ...]) -> bool:
    """Whether `body[start:end]` holds any of these bytes (a memchr search each, no pass in Python)."""
    return any(body.find(byte, start, end) >= 0 for byte in refused)


def _lists(body: bytes | bytearray, start: int, end: int) -> int:
    """How many lists the valid JSON array `body[start:end]` holds when they are all non-empty and hold no list,
    else 0: each value's text is a `[`, not followed by `]`, up to its first `]`, which a `,` (and the next value)
    or the array's last `]` follows. The text then holds as many `]` as lists and one, hence as many `[` (valid
    JSON), each at a list's start, so no item is a list."""
    i, count = start + 1, 0
    while True:
        if body[i] != _OPEN or body[i + 1] == _EMPTY:
            return 0
        close = body.find(b"]", i, end)
        if close < 0 or close >= end - 1:
            return 0
        count += 1
        if body[close + 1] != _COMMA:  # the array's own `]` (valid JSON: the text ends with it) must be next
            return count if close + 2 == end else 0
        i = close + 2


def checked_vectors(body: bytes | bytearray, start: int = 0, end: int | None = None) -> list[list[float]] | None:
    """The floats of `body[start:end]` (the whole of it by default) when that text passes the checks of the module
    docstring; None otherwise. The text is not copied out: orjson reads a view, and the rest are searches and one
    count bounded to it. The same verdicts as round 9's translate and outline, and as the counts before it
    (tests/core/test_vector_cut.py compares all three on ~6,000 texts); ~7 M instructions a 1.6 MB batch less than
    the translate (~15 M), which touched every byte in a loop, where these searches are memchr (issue 25 round 10)."""
    end = len(body) if end is None else end
    try:
        values = jsonfast.loads_strict(memoryview(body)[start:end])
    except ValueError:
        return None
    if not isinstance(values, list) or not values or not all(type(vector) is list for vector in values) \
            or not all(values):  # a list of non-empty lists
        return None
    # No whitespace and no string (a quote; an object's keys are strings too); no list inside a vector.
    if _holds_any(body, start, end, _REFUSED) or _lists(body, start, end) != len(values):
        return None
    # As many decimal points as items (a JSON number has at most one): every item is a number with one (module
    # docstring); an empty object, true, false or null, which hold none, is refused here.
    if body.count(b".", start, end) != sum(map(len, values)):
        return None
    return values


_NOT_NUMBERS = (*_REFUSED, b"{", b"u", b"a")  # and no object, true, null or false
_DIGITS = b"0123456789"


def counted_vectors(body: bytes | bytearray, start: int = 0, end: int | None = None) -> int | None:
    """How many vectors `body[start:end]` (the whole of it by default) holds when it is a list of non-empty lists
    of JSON numbers (module docstring), without whitespace; None otherwise, and when msgspec is not installed
    (`checked_vectors` decides then). No float is made: msgspec checks the grammar, the rest are searches."""
    end = len(body) if end is None else end
    if not jsonfast.is_json(memoryview(body)[start:end]):  # None: no msgspec
        return None
    # No quote, brace, `u` or `a`: no string, object, true, null or false; no list inside a vector.
    if _holds_any(body, start, end, _NOT_NUMBERS) or not (count := _lists(body, start, end)):
        return None
    # An exponent of three digits or more (leading zeros aside) may be beyond a double: judged the old way. A
    # JavaScript serializer writes one only below 1e-6, so a batch has a few at most.
    for letter in (b"e", b"E"):
        at = body.find(letter, start, end)
        while at >= 0:
            digits = at + 1 + (body[at + 1] in b"+-")
            while body[digits] == 0x30:  # "0"
                digits += 1
            if body[digits] in _DIGITS and body[digits + 1] in _DIGITS and body[digits + 2] in _DIGITS:
                return None
            at = body.find(letter, digits, end)
    return count


def decode_vectors_result(status: int, content_type: str, body: bytes | bytearray, headers: Mapping[str, str], *,
                          model: str | None = None, floats: bool = True) -> Any:
    """`decode_json_result`, with `result.data` as `CutVectors` when it passes the checks. `floats=False`: the
    caller wants the vectors' text only (the proxy's answers), so their floats are let go as soon as they are
    checked: held while the batch was handled, their 100 lists were traversed by every collection of the
    garbage collector's youngest generation meanwhile (~0.9 ms each, ~7 a request), and four batches' floats
    were held at once (issue 25, round 9)."""
    cut = cut_vectors(body) if status < 400 and body[:1] == b"{" else None
    count = counted_vectors(body, cut[1], cut[2]) if cut is not None and not floats else None
    values = None
    if cut is not None and count is None:  # floats wanted, or refused above (a 1.0e-300 is for orjson to judge)
        values = checked_vectors(body, cut[1], cut[2])
        count = None if values is None else len(values)
    if cut is not None and count is not None:
        try:
            result = decode_json_result(status, content_type, cut[0], headers, model=model)
        except Exception:  # the cut changed what the document says: judge the whole of it below
            result = None
        if isinstance(result, dict) and result.get("data") == _SENTINEL:
            result["data"] = CutVectors(body, cut[1], cut[2], count, values if floats else None)
            return result
    return decode_json_result(status, content_type, bytes(body), headers, model=model)
