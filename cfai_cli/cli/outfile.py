"""Checking an output path (-o) before any work is done, so a long generation never ends in "cannot write".

Imports the standard library and typer (cheap). Used by every command that writes a file: image,
transcribe, speak.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def check_output(path: Path, *, param: str = "--output", force: bool = True) -> None:
    """Refuse, as a usage error naming `param`, a path that cannot be written: a directory, a missing or
    unwritable parent directory, an existing file (unless `force`) or an existing read-only one."""
    shown = str(path)
    if path.is_dir():
        raise typer.BadParameter(f"{shown} is a directory; give a file name (e.g. {path / 'out'}…).",
                                 param_hint=param)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise typer.BadParameter(f"{parent} is a file, not a directory.", param_hint=param)
    if not parent.is_dir():
        raise typer.BadParameter(f"the directory {parent} does not exist; create it first (mkdir -p {parent}).",
                                 param_hint=param)
    if path.exists():
        if not force:
            raise typer.BadParameter(f"{shown} exists; use --force to overwrite.", param_hint=param)
        if not os.access(path, os.W_OK):
            raise typer.BadParameter(f"{shown} is not writable.", param_hint=param)
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot create files in {parent}: permission denied.", param_hint=param)
