"""Which line of a TOML text holds a key: tomllib and tomlkit keep no positions, so mistakes found after
parsing are placed by scanning the text for the table header and the key.

Pure: the standard library only. Good enough for config files people write (headers, `key = value`, dotted
keys); a key inside a multi-line value or an inline table is placed at the line of its nearest outer key.
"""

from __future__ import annotations

import re

_PART = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)\s*')
_HEADER = re.compile(r"^\s*\[\[?(?P<key>[^\[\]]+)\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^(?P<key>[^=#\[]+?)\s*=")


def split_key(text: str) -> tuple[str, ...] | None:
    """`a."b.c".d` -> ("a", "b.c", "d"); None when `text` is not a dotted key."""
    parts: list[str] = []
    pos = 0
    while True:
        match = _PART.match(text, pos)
        if match is None:
            return None
        token = match.group(1)
        parts.append(token[1:-1] if token[0] in "\"'" else token)
        pos = match.end()
        if pos == len(text):
            return tuple(parts)
        if text[pos] != ".":
            return None
        pos += 1


def line_of(text: str, path: tuple[str, ...]) -> int | None:
    """The 1-based line where `path` (table names then key names) is set, or where its nearest enclosing
    table or key is; None when nothing of it is in the text."""
    table: tuple[str, ...] = ()
    best: tuple[int, int] | None = None  # (how many parts of `path` matched, line)
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = split_key(header["key"]) or ("\0",)
            here = table
        else:
            assign = _ASSIGN.match(line.lstrip())
            key = split_key(assign["key"]) if assign else None
            if key is None:
                continue
            here = table + key
        matched = 0
        while matched < min(len(here), len(path)) and here[matched] == path[matched]:
            matched += 1
        if matched == len(here) and matched and (best is None or matched > best[0]):
            best = (matched, number)
    return best[1] if best else None
