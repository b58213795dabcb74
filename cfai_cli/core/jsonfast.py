"""Compact JSON for the proxy's hot paths: orjson when it is installed, else the standard library.

Imports the standard library and, when present, orjson (a dependency on CPython; see
docs/performance.md for why core may import it). Encoding a chat stream's SSE events with `json.dumps`
was ~9% of a streamed request's CPU and JSON ~7% of a plain one (py-spy); orjson does the same work 10-20x
faster and writes the same bytes as `json.dumps(value, ensure_ascii=False, separators=(",", ":"))`.

Where the two differ, the standard library's behaviour is kept, except in two corners:
- decoding: a document orjson refuses is decoded again by `json.loads`, so what it accepts (NaN, lone
  surrogate escapes) is still accepted and its error messages are the ones users see; integers beyond 64
  bits decode as floats with orjson;
- encoding: NaN and infinities become `null` with orjson (the standard library raises ValueError; neither
  writes the invalid `NaN` token); what orjson cannot encode (integers beyond 64 bits, lone surrogates) is
  encoded by `json.dumps` with `\\u` escapes.

`RawJson` holds JSON text already checked elsewhere (an embedding vector cut from Workers AI's answer,
core.workers.vector_cut): `dumps` writes it as it is (orjson.Fragment), without decoding and encoding it.
`AsciiText` is a str its maker knows JSON writes between quotes as it is (canonical base64). `measured` gives
the length `dumps` would write for a value holding either without writing their text (server.responses'
PiecewiseJSONResponse: the answer's Content-Length before any piece of it is rendered).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

try:
    import orjson
except ImportError:  # PyPy and platforms without wheels: the standard library does it all
    orjson = None  # type: ignore[assignment]

BACKEND = "orjson" if orjson is not None else "json"


class RawJson:
    """One JSON value as text, written by `dumps` as it is: the text must be valid JSON (its maker checks it). The
    text may be a view of a larger buffer (an embedding vector in its upstream answer, core.workers.vector_cut)."""

    __slots__ = ("json",)

    def __init__(self, json: bytes | memoryview) -> None:
        self.json = json

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJson) and other.json == self.json

    def __hash__(self) -> int:
        return hash(self.json)

    def __repr__(self) -> str:
        return f"RawJson({bytes(self.json[:40])!r}{'...' if len(self.json) > 40 else ''})"


class AsciiText:
    """A str (or ASCII bytes, or a view of them) that JSON writes as it is between two quotes (ASCII, no quote,
    backslash or control character: its maker checks, e.g. canonical base64), so its written length is known:
    `len(text) + 2`. Bytes are not copied into a rendering by `pieces` (an image's base64 sent as a view of the
    upstream answer it came in)."""

    __slots__ = ("text",)

    def __init__(self, text: str | bytes | memoryview) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsciiText) and self.as_str() == other.as_str()

    def __hash__(self) -> int:
        return hash(self.as_str())

    def __repr__(self) -> str:
        return f"AsciiText({self.as_str()[:40]!r}{'...' if len(self.text) > 40 else ''})"

    def as_str(self) -> str:
        """The text as a str (a copy when it is bytes)."""
        text = self.text
        return text if isinstance(text, str) else str(text, "ascii")


def _fragment(value: Any) -> Any:
    # orjson calls this only for a type it does not know: nothing else pays for it.
    if isinstance(value, RawJson):
        raw = value.json
        return orjson.Fragment(raw if isinstance(raw, bytes) else bytes(raw))  # bytes or str only
    if isinstance(value, AsciiText):
        text = value.text
        return text if isinstance(text, str) else orjson.Fragment(b'"%s"' % text)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _decoded(value: Any) -> Any:
    if isinstance(value, RawJson):
        return json.loads(bytes(value.json))
    if isinstance(value, AsciiText):
        return value.as_str()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _stdlib_dumps(value: Any) -> bytes:
    # ASCII escapes: valid JSON for any str, lone surrogates included (encoding them raw would fail).
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_decoded).encode("ascii")


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON (no spaces, non-ASCII characters as themselves, str or int keys)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, default=_fragment, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # orjson.JSONEncodeError: a big integer, a lone surrogate, an unknown type
            pass
        return _stdlib_dumps(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                          default=_decoded).encode("utf-8")
    except UnicodeEncodeError:
        return _stdlib_dumps(value)


_PLACEHOLDER = b"0"


def measured(value: Any) -> bytes | int:
    """`dumps(value)`, or, when `value` holds a RawJson or an AsciiText, the length of `dumps(value)` found without
    writing their text (each is written as one placeholder byte and its own length added). A value orjson
    refuses (or no orjson) is written whole by `dumps`."""
    if orjson is None:
        return dumps(value)
    deferred, extra = 0, 0

    def placeholder(item: Any) -> Any:
        nonlocal deferred, extra
        if isinstance(item, RawJson):
            size = len(item.json)
        elif isinstance(item, AsciiText):
            size = len(item.text) + 2
        else:
            raise TypeError(f"Type is not JSON serializable: {type(item).__name__}")
        deferred, extra = deferred + 1, extra + size - len(_PLACEHOLDER)
        return orjson.Fragment(_PLACEHOLDER)

    try:
        out = orjson.dumps(value, default=placeholder, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError: what `dumps` hands to the standard library
        return dumps(value)
    return len(out) + extra if deferred else out


_SPLIT = b"\x00"  # never in orjson's output otherwise: JSON text holds no raw control character


def pieces(value: Any, *, lead: bytes = b"", inner: bool = False) -> list[bytes | memoryview]:
    """`dumps(value)` as pieces to send one after the other: each AsciiText holding bytes is a piece of its own,
    the bytes themselves, not copied into a rendering (the rest is rendered around them). Four images' base64
    rendered into the answer was a copy of each image beside the answer it came in (issue 25, round 8). Each
    RawJson's text is joined with the rendering around it: copied once, by that join, and not by orjson first
    (2,048 embedding vectors held as views of their upstream answers: 33 MB copied once, not three times; issue
    25, round 9). Without either, or when the split cannot be told (no orjson, a value it refuses), one piece:
    `dumps(value)`. `lead` goes before the first piece; `inner`: a list's items only, without its brackets."""
    if orjson is None:
        return [_outer(dumps(value), lead, inner)]
    texts: list[bytes | memoryview] = []
    apart: list[bool] = []  # for each of texts: a piece of its own between quotes (AsciiText), or joined (RawJson)

    def split(item: Any) -> Any:
        if isinstance(item, RawJson):
            texts.append(item.json)
            apart.append(False)
            return orjson.Fragment(_SPLIT)
        if isinstance(item, AsciiText) and not isinstance(item.text, str):
            texts.append(item.text)
            apart.append(True)
            return orjson.Fragment(_SPLIT)
        return _fragment(item)

    try:
        out = orjson.dumps(value, default=split, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError: what `dumps` hands to the standard library
        return [_outer(dumps(value), lead, inner)]
    if not texts:
        return [_outer(out, lead, inner)]
    around = out.split(_SPLIT)
    if len(around) != len(texts) + 1:  # cannot happen (see _SPLIT); the whole rendering if it did
        return [_outer(dumps(value), lead, inner)]
    if inner:  # the brackets are in the first and last frames, which are short
        around[0], around[-1] = around[0][1:], around[-1][:-1]
    parts: list[bytes | memoryview] = []
    joined: list[bytes | memoryview] = [lead, around[0]]
    for text, alone, after in zip(texts, apart, around[1:], strict=True):
        if alone:
            joined.append(b'"')
            parts += (b"".join(joined), text)
            joined = [b'"', after]
        else:
            joined += (text, after)
    parts.append(b"".join(joined))
    return parts


def _outer(rendered: bytes, lead: bytes, inner: bool) -> bytes:
    """`lead` and `rendered` (without its first and last bytes, a list's brackets, when `inner`): one copy."""
    if not inner:
        return lead + rendered if lead else rendered
    return b"".join((lead, memoryview(rendered)[1:-1]))


def dumps_all(values: Sequence[Any]) -> list[bytes]:
    """`dumps` of each value, for values with str keys only (a stream's chunks). With orjson, `map` keeps the
    loop and the calls in C, and without OPT_NON_STR_KEYS, which doubles orjson's work (a batch of 22 chat
    chunks: 152k -> 78k instructions, callgrind); a value it refuses (an int key, a RawJson, a big integer)
    makes the whole batch go through `dumps`, so the bytes are always the ones `dumps` writes."""
    if orjson is not None:
        try:
            return list(map(orjson.dumps, values))
        except TypeError:  # orjson.JSONEncodeError
            pass
    return [dumps(value) for value in values]


def dumps_str(value: Any) -> str:
    """`dumps` as text."""
    return dumps(value).decode("utf-8")


def loads(data: bytes | bytearray | str) -> Any:
    """Decode JSON text or UTF-8 bytes; raises ValueError (json.JSONDecodeError or UnicodeDecodeError).

    Bytes are UTF-8 or an error: `json.loads(bytes)` would guess UTF-16/32 (and skip a UTF-8 BOM) from the
    first bytes, and JSON exchanged between systems must be UTF-8 (RFC 8259), as orjson insists too.
    """
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # decoded again below: the standard library's verdict and message win
    if not isinstance(data, str):
        data = bytes(data).decode("utf-8")  # strict: UnicodeDecodeError is a ValueError
    return loads_text(data)


def loads_text(text: str) -> Any:
    """`json.loads(text)`, but a document nested deeper than Python's recursion limit is a ValueError like any other
    JSON it refuses: its RecursionError would pass every `except ValueError` (a request's body or a tool call's
    arguments of 100,000 `[`, from a client or a model, was a 500 where it is bad input)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def loads_all(datas: Sequence[bytes | str]) -> list[Any]:
    """`loads` of each; ValueError for the first that is not JSON. With orjson, `map` keeps the loop and the
    calls in C (a stream's read of 21 events: one Python call instead of 21 of `loads`)."""
    if orjson is not None:
        try:
            return list(map(orjson.loads, datas))
        except orjson.JSONDecodeError:
            pass  # what `loads` hands to the standard library: let it, one by one
    return [loads(data) for data in datas]


def loads_strict(data: bytes | memoryview) -> Any:
    """Decode JSON with orjson alone: ValueError for what it refuses (NaN, infinities, numbers beyond a double,
    lone surrogates), which `loads` would hand to the standard library, and when orjson is not installed."""
    if orjson is None:
        raise ValueError("orjson is not installed")
    return orjson.loads(data)


@functools.cache
def _json_skipper() -> Callable[[bytes | memoryview], Any] | None:
    """msgspec's decoder of a JSON document into one `msgspec.Raw` (its grammar checked, nothing built), made at the
    first call (importing msgspec is ~5 ms once: `cfai chat` never needs it); None without msgspec (PyPy,
    platforms without wheels)."""
    try:
        import msgspec
    except ImportError:
        return None
    return msgspec.json.Decoder(msgspec.Raw).decode


def is_json(data: bytes | memoryview) -> bool | None:
    """Whether `data` is one JSON document, its whole grammar checked (numbers included) without building any of
    its values: msgspec decodes it as one `msgspec.Raw`, a view of `data`, so memory stays flat whatever the document
    holds (a list of raw items took ~28 bytes a byte of `[1,1,…]`). None when msgspec is not installed: the caller
    checks another way. For the vectors of an embeddings answer (core.workers.vector_cut) that is ~0.8 ns a byte
    where orjson's parse took ~1.3 ns and making and freeing its floats ~0.5 ns more (1.6 MB batches, issue 25
    round 11, docs/performance.md)."""
    decode = _json_skipper()
    if decode is None:
        return None
    try:
        decode(data)
    except (ValueError, RecursionError):  # msgspec.DecodeError is a ValueError; nested past Python's limit
        return False
    return True
