"""Writing config.toml: one key set or removed, the rest of the file kept as it was (values, comments, order,
layout); 0600, atomically.

Imports: stdlib, tomlkit (a format-preserving TOML editor, imported only when a value is written), errors,
core, settings (its field list) and settings.file (to check a value as loading would).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cfai_cli.core.catalog import DEFAULT_ALIASES, validate_model_id
from cfai_cli.core.config_file import vision_alias_orphan
from cfai_cli.errors import ConfigError, InvalidRequest
from cfai_cli.settings import SETTABLE_KEYS, SETTINGS, read_config_file
from cfai_cli.settings.file import coerce


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
    """Set (or with None, remove) one key in the config file; returns the new file contents.

    The change is checked on the file's values as loading reads them, then made in the file's own text with
    tomlkit, so the user's comments and layout survive `cfai config set`.
    """
    import tomlkit

    data = read_config_file(path)
    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    if key.startswith(("aliases.", "vision_aliases.")):
        table_name, name = key.split(".", 1)
        if not name:
            raise ConfigError(f"Use {table_name}.<name>, e.g. `cfai config set {table_name}.fast "
                              "@cf/meta/llama-3.1-8b-instruct`.")
        table = dict(data.get(table_name, {}))
        if value is None:
            if (table_name == "aliases" and name in data.get("vision_aliases", {})
                    and name not in DEFAULT_ALIASES):
                raise ConfigError(f"vision_aliases.{name} needs aliases.{name}; unset vision_aliases.{name} first.")
            table.pop(name, None)
        elif table_name == "aliases":
            try:
                table[name] = validate_model_id(value)
            except InvalidRequest as exc:  # a bad id is a config problem here
                raise ConfigError(exc.message) from None
        else:
            table[name] = _vision_alias(name, value, {**DEFAULT_ALIASES, **data.get("aliases", {})})
        data[table_name] = table
        _edit(document, table_name, name, table.get(name))
    elif key in {spec.name for spec in SETTINGS}:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = coerce(key, value, "the command line", strict=True)
        _edit(document, None, key, data.get(key))
    elif value is None and _remove_any(document, key):
        pass  # a key the schema does not know (a typo the loader reported), removed so the file loads again
    else:
        import difflib

        close = difflib.get_close_matches(key, [spec.name for spec in SETTINGS], n=1)
        hint = f"Did you mean {close[0]}? " if close else ""
        raise ConfigError(f"Unknown setting {key!r}. {hint}Known settings: {', '.join(SETTABLE_KEYS)}.")
    write_private(path, tomlkit.dumps(document))
    return data


def _remove_any(document: Any, key: str) -> bool:
    """Remove the key at the dotted path `key` (quoted parts allowed) if the file has it."""
    from cfai_cli.core.toml_lines import split_key

    parts = split_key(key)
    if not parts:
        return False
    target = document
    for part in parts[:-1]:
        target = target.get(part) if hasattr(target, "get") else None
        if target is None:
            return False
    if not hasattr(target, "get") or parts[-1] not in target:
        return False
    del target[parts[-1]]
    return True


def _edit(document: Any, table_name: str | None, key: str, value: Any) -> None:
    """Set or (value None) remove `key` at the top of the document or in its `[table_name]` table."""
    import tomlkit

    if table_name is None:
        target = document
    else:
        if table_name not in document:
            if value is None:
                return
            document[table_name] = tomlkit.table()
        target = document[table_name]
    if value is None:
        if key in target:
            del target[key]
    else:
        target[key] = value


def _vision_alias(name: str, target: str, aliases: Mapping[str, str]) -> str:
    if not name:
        raise ConfigError(f"vision_aliases.{name}: give the alias's name.")
    if name not in aliases:
        raise ConfigError(f"vision_aliases.{name}: {vision_alias_orphan(name)}.")
    try:
        return validate_model_id(target.strip())
    except InvalidRequest as exc:
        raise ConfigError(f"vision_aliases.{name}: {exc.message}") from None
