"""Where a JSON member's value starts in a document's raw bytes: what image_cut and vector_cut look for first.

Pure: standard library. The member name is found with `bytes.find` (memchr), so a 1 MB value after it is never
read in Python. Which member a hit was (a nested one, a later duplicate) is for the caller to check once the
rest of the document is parsed around a sentinel in the value's place.
"""

from __future__ import annotations

JSON_SPACE = b" \t\r\n"


def skip_space(body: bytes | bytearray, i: int) -> int:
    """The index of the first byte at or after `i` that is not JSON whitespace (len(body) if none is)."""
    while i < len(body) and body[i] in JSON_SPACE:
        i += 1
    return i


def value_start(body: bytes | bytearray, name: bytes) -> int:
    """The index of the first byte of the value of the first member named `name` (given quoted: `b'"data"'`),
    or -1 when the name is missing or not followed by a colon."""
    key = body.find(name)
    if key < 0:
        return -1
    colon = skip_space(body, key + len(name))
    if body[colon:colon + 1] != b":":
        return -1
    return skip_space(body, colon + 1)
