"""Code that Python compiles from text at every start, kept from one run of the console script to the next.

Two places in the standard library compile source text each time a program starts, and Python's bytecode cache
(`__pycache__`) keeps neither: `@dataclass` writes each class's methods as source and `exec`s it (on 3.11, six
compilations for a frozen class: `__init__`, `__repr__`, `__eq__`, `__setattr__`, `__delattr__`, `__hash__`),
and `typing.ForwardRef` compiles every annotation written as a string (cfai's modules all use
`from __future__ import annotations`, so each type hint pydantic or Typer reads is one). A one-shot
`cfai chat hi` creates ~100 dataclasses (cfai's ~45, pydantic's and annotated_types' the rest) and ~960
forward references: ~270 M of its 1,178 M instructions went to compiling their text (callgrind, 2026-12-02;
a frozen five-field dataclass costs 4.0 M instructions to create, a plain one 2.0 M, 80 % of it in `exec`).
No library caches either; the classes' semantics (frozen, slots, hashing) are not cfai's to weaken for speed.

`install()` gives the `dataclasses` module an `exec` and `typing` a `compile` of their own (a module global
shadows the builtin; each module calls it in one place on Python 3.11-3.13), and since round 8 `inspect` and
`collections` an `eval` (Typer reads each command's string annotations with `inspect.signature(eval_str=True)`,
`namedtuple` makes its `__new__` from text) and typing_inspection an `exec` (its `is_*` checks, made from text
as pydantic imports it): 117 more compilations a `cfai chat hi`, 687.7 -> 674.4 M instructions (callgrind,
round 8). The same text, compiled the way the builtin would have compiled it there (those modules have no
`__future__` flags, so neither does the code),
is looked up in a table that `marshal` loads from `cfai_cli/__pycache__/` and writes back at exit when the run
learned something. The text is the key, so the code run is exactly what the builtin would have produced, with
or without the table; a stale or unreadable table, or one written by another release of Python (its bytecode
magic number, as a .pyc records it), is just missed. Nothing is written where Python would not
write bytecode either (`PYTHONDONTWRITEBYTECODE`, a read-only install). Used by the console script only
(`cli/entry.py`); tests and library use see the plain modules.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sys
from types import CodeType
from typing import Any

LIMIT = 8192  # entries kept; past it, only what the last run used (a table that only grows would slow loads)


class CompiledSources:
    """(mode, source text) -> its compiled code object, loaded from and saved to `path`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.codes: dict[tuple[str, str], CodeType] = _load(path)
        self.used: set[tuple[str, str]] = set()
        self.learned = False

    def code(self, source: str, mode: str) -> CodeType:
        """`source` compiled as the builtin compiles it in a module without `__future__` imports: not with
        this module's `annotations` flag, which would turn dataclass methods' annotations into text."""
        key = (mode, source)
        self.used.add(key)
        found = self.codes.get(key)
        if found is None:
            found = self.codes[key] = compile(source, "<string>", mode, dont_inherit=True)
            self.learned = True
        return found

    def exec(self, source: Any, globals: dict[str, Any] | None = None,
             locals: dict[str, Any] | None = None) -> None:
        """`exec` for dataclasses.py, which calls `exec(text, globals, namespace)`."""
        exec(self.code(source, "exec") if type(source) is str else source, globals, locals)

    def eval(self, source: Any, globals: dict[str, Any] | None = None, locals: Any = None) -> Any:
        """`eval` for inspect.py (`get_annotations(eval_str=True)`, how Typer reads a command's string
        annotations) and collections (`namedtuple`'s `__new__`): a text is compiled as the builtin compiles it,
        its leading spaces and tabs stripped first (the builtin's own step); anything else is the builtin's."""
        if type(source) is str:
            source = self.code(source.lstrip(" \t"), "eval")
        return eval(source, globals, locals)

    def compile(self, source: Any, filename: Any, mode: str, flags: int = 0, dont_inherit: bool = False,
                optimize: int = -1) -> Any:
        """`compile` for typing.py, which calls `compile(text, '<string>', 'eval')`; any other call is the
        builtin's own (its flags are then typing's, none, as dont_inherit gives)."""
        if type(source) is str and filename == "<string>" and mode == "eval" and not flags and optimize == -1:
            return self.code(source, mode)
        return compile(source, filename, mode, flags, dont_inherit=True, optimize=optimize)

    def save(self) -> None:
        """Write the table if this run compiled something new; atomically, as two runs may save at once."""
        if not self.learned or sys.dont_write_bytecode:
            return
        # tuple(): one step under the GIL, should a daemon thread of `cfai serve` still be making classes
        codes = self.codes if len(self.codes) <= LIMIT else {key: self.codes[key] for key in tuple(self.used)}
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(temporary, "wb") as out:
                out.write(marshal.dumps((_magic(), codes)))
            os.replace(temporary, self.path)
        except OSError:  # a read-only install: every run compiles, as it would without the table
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _load(path: str) -> dict[tuple[str, str], CodeType]:
    try:
        with open(path, "rb") as table:
            magic, codes = marshal.loads(table.read())
    except (OSError, ValueError, EOFError, TypeError):  # missing, truncated, or not a table
        return {}
    # The bytecode's format, as a .pyc checks it: a table from another release of Python is not used.
    return codes if magic == _magic() and isinstance(codes, dict) else {}


def _magic() -> bytes:
    """The interpreter's bytecode magic number (importlib.util.MAGIC_NUMBER, from the module that is always
    loaded: importlib.util itself is not)."""
    return bytes(sys.modules["_frozen_importlib_external"].MAGIC_NUMBER)


def table_path() -> str:
    """Next to cfai's own bytecode, named for this Python like a .pyc (another version's marshal and
    bytecode differ)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, "__pycache__", f"compiled-text.{sys.implementation.cache_tag}.marshal")


def install() -> CompiledSources | None:
    """Give `dataclasses` and `typing` the table's `exec` and `compile`, and save the table at exit; None
    when it is already installed or the interpreter keeps no bytecode (no cache tag)."""
    import atexit
    import collections
    import dataclasses
    import inspect
    import typing

    current = getattr(dataclasses, "exec", None)
    if sys.implementation.cache_tag is None or isinstance(getattr(current, "__self__", None), CompiledSources):
        return None
    table = CompiledSources(table_path())
    dataclasses.exec = table.exec  # type: ignore[attr-defined]
    typing.compile = table.compile  # type: ignore[attr-defined]
    inspect.eval = collections.eval = table.eval  # type: ignore[attr-defined]
    sys.meta_path.insert(0, _Seeding(SEEDED, table))
    atexit.register(table.save)
    return table


# Modules that `exec` text as they are imported, given the table's `exec` before their code runs. Each one
# compiles the text in a module without `__future__` imports (the table's way): typing_inspection builds its
# ~30 `is_*` checks from text when pydantic first imports it (~8 M instructions of `cfai chat hi`).
SEEDED = ("typing_inspection.typing_objects",)


class _Seeding:
    """A finder first on `sys.meta_path` that finds nothing itself: when one of `names` is about to be imported,
    it asks the other finders for the spec and has the module's loader put the table's `exec` in the new
    module's namespace before running its code; it leaves once all were seen."""

    def __init__(self, names: tuple[str, ...], table: CompiledSources) -> None:
        self.names = set(names)
        self.table = table

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.names:
            return None
        self.names.discard(name)
        if not self.names:
            sys.meta_path.remove(self)
        for finder in [finder for finder in sys.meta_path if finder is not self]:
            spec = getattr(finder, "find_spec", None) and finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader: Any = spec.loader
        run = getattr(loader, "exec_module", None)
        if run is not None and getattr(loader, "name", None) == name:  # a module's own file loader, not shared
            table = self.table

            def exec_module(module: Any) -> None:
                module.exec = table.exec
                run(module)

            loader.exec_module = exec_module
        return spec
