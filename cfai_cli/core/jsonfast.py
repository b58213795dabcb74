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
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # PyPy and platforms without wheels: the standard library does it all
    orjson = None  # type: ignore[assignment]

BACKEND = "orjson" if orjson is not None else "json"


def _stdlib_dumps(value: Any) -> bytes:
    # ASCII escapes: valid JSON for any str, lone surrogates included (encoding them raw would fail).
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON (no spaces, non-ASCII characters as themselves, str or int keys)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # orjson.JSONEncodeError: a big integer, a lone surrogate, an unknown type
            pass
        return _stdlib_dumps(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return _stdlib_dumps(value)


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
    return json.loads(data)
