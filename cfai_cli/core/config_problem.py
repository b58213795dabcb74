"""A mistake in config.toml as one line: the file, the line (core.toml_lines), the TOML path, what is wrong (a
did-you-mean for an unknown key) and the `cfai config` command that fixes it; never a pydantic dump.

Pure: pydantic, the standard library, core.config_file and core.toml_lines.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cfai_cli.core.config_file import UPSTREAM_TYPES, CacheTable, Misplaced, RoutingTable
from cfai_cli.core.toml_lines import line_of

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")  # a TOML key that needs no quotes

# ---- one line per mistake ------------------------------------------------------------------------------

_TABLE_HINTS = {
    "upstreams": "must hold one table per upstream, e.g. [upstreams.groq]",
    "routes": "must map model names to lists of targets",
    "routing": "must be a table",
    "cache": "must be a table, e.g. [cache] enabled = true",
    "aliases": "must map names to model ids (strings)",
    "vision_aliases": "must be a table mapping alias names to Workers AI ids",
}
_ENTRY_HINTS = {
    "aliases": "expected a model id (a string)",
    "vision_aliases": "expected a Workers AI model id such as '@cf/mistralai/mistral-small-3.1-24b-instruct'",
}
_KEY_HINTS = {
    "type": 'must be "cloudflare", "openai" (an OpenAI-compatible API), "anthropic" or "gemini"',
    "account_id": "must be the 32-character id of the Cloudflare account",
    "base_url": "must be the provider's API root, e.g. https://api.groq.com/openai/v1",
    "api_base": "must be an http(s) URL",
}


def toml_path(loc: tuple[str | int, ...]) -> str:
    """("upstreams", "groq", "openai", "api_kye") -> "[upstreams.groq] api_kye"; pydantic's own steps dropped."""
    parts = [p if isinstance(p, int) or _BARE.fullmatch(p) else json.dumps(p) for p in loc if p != "[key]"]
    if len(parts) >= 3 and parts[0] == "upstreams" and isinstance(parts[2], str) and parts[2] in UPSTREAM_TYPES:
        del parts[2]  # the discriminated union's tag
    if len(parts) == 1:
        return str(parts[0])
    depth = 2 if parts[0] == "upstreams" else 1
    table = "[" + ".".join(str(p) for p in parts[:depth]) + "]"
    rest = "".join(f"[{p}]" if isinstance(p, int) else (" " if i == 0 else ".") + p
                   for i, p in enumerate(parts[depth:]))
    return table + rest


def _known(loc: tuple[str | int, ...], top: set[str]) -> set[str]:
    if not loc:
        return top
    if loc[0] == "routing":
        return set(RoutingTable.model_fields)
    if loc[0] == "cache":
        return set(CacheTable.model_fields)
    if loc[0] == "upstreams" and len(loc) >= 3 and loc[2] in UPSTREAM_TYPES:
        return set(UPSTREAM_TYPES[str(loc[2])].model_fields)
    return set()


def _message(error: Mapping[str, Any], top: set[str], hints: Mapping[str, str]) -> str:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind = error["type"]
    last = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        known = sorted(_known(loc[:-1], top))
        close = difflib.get_close_matches(last, known, n=1)
        return "unknown field" + (f"; did you mean {close[0]}?" if close else f"; known: {', '.join(known)}" if known
                                  else "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _KEY_HINTS["type"]
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if len(loc) == 1 and last in _TABLE_HINTS:
        return _TABLE_HINTS[last]
    if len(loc) == 2 and loc[0] in _ENTRY_HINTS:
        return f"{_ENTRY_HINTS[str(loc[0])]}, got {error['input']!r}"
    top_level_hint = f"expected {hints[last]}" if last in hints else None  # what a setting's type expects
    hint = top_level_hint if len(loc) == 1 else _KEY_HINTS.get(last)
    if kind == "missing":
        return "missing" + (f"; it {hint}" if hint else "")
    return f"{hint or str(error['msg']).lower()}, got {error['input']!r}"


def key_path(loc: tuple[str | int, ...]) -> tuple[str, ...]:
    """A pydantic location as the TOML keys it names: pydantic's own steps, union tags and list indexes dropped."""
    parts = [str(p) for p in loc if p != "[key]" and not isinstance(p, int)]
    if len(parts) >= 3 and parts[0] == "upstreams" and parts[2] in UPSTREAM_TYPES:
        del parts[2]
    return tuple(parts)


def repair(loc: tuple[str | int, ...], unknown: bool) -> str:
    """What to do about a mistake at `loc`: the `cfai config` command that fixes it, else the editor."""
    keys = key_path(loc)
    dotted = ".".join(p if _BARE.fullmatch(p) else json.dumps(p) for p in keys)
    if unknown:
        return f"remove it with `cfai config unset {dotted}` or edit the file"
    if len(keys) == 1 or (len(keys) == 2 and keys[0] in ("aliases", "vision_aliases")):
        return f"fix it with `cfai config set {dotted} VALUE` (or `cfai config unset {dotted}`)"
    return "fix it in the file (`cfai config path` prints where it is)"


def problem(exc: ValidationError | Misplaced, source: str, top: set[str], hints: Mapping[str, str],
            text: str | None = None) -> str:
    """One line for the first mistake, with its line when `text` (the file's) is given and a fix:
    `config.toml:3: [upstreams.groq] api_kye: unknown field; did you mean api_key? (remove it with …)`"""
    if isinstance(exc, Misplaced):
        loc, message, unknown = exc.loc, exc.message, False
        where = toml_path(loc)
    else:
        error = exc.errors()[0]
        message = _message(error, top, hints)
        loc = tuple(error["loc"])
        unknown = error["type"] == "extra_forbidden"
        where = toml_path((*loc, "type") if error["type"].startswith("union_tag") else loc)
    line = line_of(text, key_path(loc)) if text is not None else None
    place = source if line is None else f"{source}:{line}"
    return _line(place, where, message) + (f" ({repair(loc, unknown)})" if text is not None else "")


def _line(source: str, where: str, message: str) -> str:
    return f"{source}: {where}: {message}" + ("" if message.endswith((".", "?")) else ".")
