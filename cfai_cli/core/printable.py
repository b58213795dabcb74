"""Client-chosen strings made safe to store and print: no control characters, no escapes, bounded length.

Pure: standard library only. Model names, error codes and the like come from clients and upstreams; the
usage log keeps them and `cfai usage` prints them on a terminal, where ESC sequences (colours, titles,
cursor moves, OSC 8 links) and bidi overrides could rewrite what the operator sees.
"""

from __future__ import annotations

import re

# ESC-introduced sequences as whole units (CSI, OSC up to BEL or ST, and two-character escapes), then any
# C0/C1 control left over, DEL, and the invisible formatting characters that reorder or hide text.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -~]?|\x9b[0-?]*[ -/]*[@-~]?")
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_SAFE = re.compile(r"[ -~]*")  # plain printable ASCII: the usual case, left alone without a rewrite

MAX_LENGTH = 200


def printable(text: str, limit: int = MAX_LENGTH) -> str:
    """`text` without terminal escapes, control characters and bidi/zero-width marks, at most `limit`
    characters (a longer one ends with '…')."""
    if not _SAFE.fullmatch(text):
        text = _INVISIBLE.sub("", _ESCAPES.sub("", text))
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def printable_or_none(text: str | None, limit: int = MAX_LENGTH) -> str | None:
    return None if text is None else printable(text, limit)
