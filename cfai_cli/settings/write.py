"""Writing config.toml: one key set or removed, every other value the file holds kept; 0600, atomically.

Imports: stdlib, errors, core, settings (its field list) and settings.file (to check a value as loading would).
Comments in the file are not kept (the standard library reads TOML but does not edit it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import Any

from cfai_cli.core.catalog import DEFAULT_ALIASES, validate_model_id
from cfai_cli.core.config_file import vision_alias_orphan
from cfai_cli.errors import ConfigError, InvalidRequest
from cfai_cli.settings import SETTABLE_KEYS, SETTINGS, read_config_file
from cfai_cli.settings.file import coerce


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table (inside a list)
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, date | time):
        return value.isoformat()  # a TOML date or time stays one
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or c == "\x7f" else c)
                         for c in str(value)) + '"'


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _toml_key(key: str) -> str:
    bare = bool(key) and key.replace("-", "").replace("_", "").isalnum() and key.isascii()
    return key if bare else _toml_value(key)


def dump_toml(data: Mapping[str, Any], _path: tuple[str, ...] = ()) -> str:
    """TOML for what `tomllib` read: scalars, lists and nested tables, so rewriting the file keeps them all."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    if _path and (lines or not any(isinstance(v, Mapping) for v in data.values())):
        lines.insert(0, f"\n[{'.'.join(_toml_key(p) for p in _path)}]")
    text = "\n".join(lines) + ("\n" if lines else "")
    for table, entries in data.items():
        if isinstance(entries, Mapping):
            text += dump_toml(entries, (*_path, table))
    return text


def write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (0600), so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def set_config_value(path: Path, key: str, value: str | None) -> dict[str, Any]:
    """Set (or with None, remove) one key in the config file; returns the new file contents."""
    data = read_config_file(path)
    if key.startswith("aliases."):
        name = key.split(".", 1)[1]
        if not name:
            raise ConfigError("Use aliases.<name>, e.g. `cfai config set aliases.fast @cf/meta/llama-3.1-8b-instruct`.")
        table = dict(data.get("aliases", {}))
        if value is None:
            if name in data.get("vision_aliases", {}) and name not in DEFAULT_ALIASES:
                raise ConfigError(f"vision_aliases.{name} needs aliases.{name}; unset vision_aliases.{name} first.")
            table.pop(name, None)
        else:
            try:
                table[name] = validate_model_id(value)
            except InvalidRequest as exc:  # a bad id is a config problem here
                raise ConfigError(exc.message) from None
        data["aliases"] = table
    elif key.startswith("vision_aliases."):
        name = key.split(".", 1)[1]
        table = dict(data.get("vision_aliases", {}))
        if value is None:
            table.pop(name, None)
        else:
            table[name] = _vision_alias(name, value, {**DEFAULT_ALIASES, **data.get("aliases", {})})
        data["vision_aliases"] = table
    elif key in {spec.name for spec in SETTINGS}:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = coerce(key, value, "the command line")
    else:
        raise ConfigError(f"Unknown setting {key!r}. Known settings: {', '.join(SETTABLE_KEYS)}.")
    write_private(path, dump_toml(data))
    return data


def _vision_alias(name: str, target: str, aliases: Mapping[str, str]) -> str:
    if not name:
        raise ConfigError(f"vision_aliases.{name}: give the alias's name.")
    if name not in aliases:
        raise ConfigError(f"vision_aliases.{name}: {vision_alias_orphan(name)}.")
    try:
        return validate_model_id(target.strip())
    except InvalidRequest as exc:
        raise ConfigError(f"vision_aliases.{name}: {exc.message}") from None
