"""`cfai --help`, the list of commands, printed again from what the same run printed before.

Imports only the standard library (the console script asks it before anything else is imported).

The listing is Typer's output (cli/app.py `help_listing`), and it is the same for the same cfai, Typer and
terminal: the first `cfai --help` prints it through Typer and keeps the text; a later one whose inputs are all
the same prints the kept text without importing Typer or any command module. Counted under
`valgrind --tool=callgrind` (2026-12-02, the console script, bytecode caches written): 290 M instructions
through Typer (the interpreter and `site` 90 M, `import typer` and its standard library ~165 M, the 19 command
modules and the listing ~25 M), the kept text ~100 M. Typer offers no such cache, and `--help` is what a user
runs first.

What the text depends on is the key, and any difference is a miss (the run goes through Typer and keeps its
new text): the arguments, cfai's version and the Python running it, `sys.path` (which Typer is imported),
the size and mtime of every module in `cfai_cli/cli/` and of `errors.py` and `core/defaults.py`, and of the
`typer/__init__.py` the text was made with (an upgrade rewrites it), the terminal's width (`COLUMNS` or the
terminal's size: click wraps at it), whether stdout is a terminal, and the environment variables Typer, click
or Python's text encoding read. Kept next to cfai's bytecode (`__pycache__/root-help.<cache tag>.marshal`),
and never where Python would not write bytecode. Only a listing that exited 0 is kept.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False  # not typing's: a kept listing is printed without importing typing (~8 M instructions)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

# What Typer, click and the text encoding of stdout read from the environment when printing help.
ENV = ("COLUMNS", "LINES", "TERMINAL_WIDTH", "TERM", "NO_COLOR", "FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS",
       "TYPER_USE_RICH", "TYPER_STANDARD_TRACEBACK", "_TYPER_STANDARD_TRACEBACK", "_TYPER_FORCE_DISABLE_TERMINAL",
       "LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING", "PYTHONUTF8")
KEPT = 16  # listings kept (terminal widths, root flags); past it the oldest go


def asks_root_help(argv: list[str]) -> bool:
    """`cfai`, `cfai --help` (with root flags, no command): the help that lists every command."""
    return not argv or (all(arg.startswith("-") for arg in argv) and bool({"-h", "--help"} & set(argv)))


def _package() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table_path() -> str:
    return os.path.join(_package(), "__pycache__", f"root-help.{sys.implementation.cache_tag}.marshal")


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def _terminal() -> tuple[int, int] | None:
    try:
        return tuple(os.get_terminal_size(sys.__stdout__.fileno()))  # type: ignore[union-attr,return-value]
    except (AttributeError, ValueError, OSError):
        return None


def key(argv: list[str]) -> tuple[Any, ...]:
    """Everything the listing's text depends on (marshal-able)."""
    from cfai_cli import __version__

    package = _package()
    cli = os.path.join(package, "cli")
    sources = sorted((entry.name, entry.stat().st_mtime_ns, entry.stat().st_size) for entry in os.scandir(cli)
                     if entry.name.endswith(".py"))
    isatty = getattr(sys.stdout, "isatty", None)
    return (tuple(argv), __version__, sys.version, tuple(sys.path), tuple(sources),
            _stamp(os.path.join(package, "errors.py")), _stamp(os.path.join(package, "core", "defaults.py")),
            tuple((name, os.environ.get(name)) for name in ENV), _terminal(), bool(isatty and isatty()),
            getattr(sys.stdout, "encoding", None))


def _load() -> dict[Any, Any]:
    try:
        with open(table_path(), "rb") as table:
            kept = marshal.loads(table.read())
    except (OSError, ValueError, EOFError, TypeError):  # missing, truncated, or not a table
        return {}
    return kept if isinstance(kept, dict) else {}


def printed(argv: list[str]) -> bool:
    """Print the kept listing for this run, if there is one whose inputs are all the same."""
    if not argv or not asks_root_help(argv) or "_CFAI_COMPLETE" in os.environ or sys.implementation.cache_tag is None:
        return False
    found = _load().get(key(argv))
    if not isinstance(found, tuple) or len(found) != 3:
        return False
    typer_init, typer_stamp, text = found
    if _stamp(typer_init) != typer_stamp:
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True


def record(argv: list[str], show: Callable[[], Any]) -> NoReturn:
    """Run `show` (Typer printing the listing, then exiting), keep what it printed when it exited 0, and
    print it; any other ending (an error, no arguments' usage) goes on as it would have."""
    import contextlib
    import io

    if not argv or sys.implementation.cache_tag is None:
        show()
        raise SystemExit(0)  # pragma: no cover  (click always exits)
    captured = io.StringIO()
    status: Any = 0
    try:
        with contextlib.redirect_stdout(captured):
            show()
    except SystemExit as exc:
        status = exc.code
    text = captured.getvalue()
    sys.stdout.write(text)
    sys.stdout.flush()
    # ASCII only: a character stdout's encoding cannot write is then click's to handle, every time
    typer_init = getattr(sys.modules.get("typer"), "__file__", None)
    if status in (0, None) and text.isascii() and isinstance(typer_init, str) and not sys.dont_write_bytecode:
        _keep(key(argv), typer_init, text)
    raise SystemExit(status)


def _keep(found_key: tuple[Any, ...], typer_init: str, text: str) -> None:
    import contextlib

    kept = _load()
    kept.pop(found_key, None)
    kept[found_key] = (typer_init, _stamp(typer_init), text)
    while len(kept) > KEPT:
        kept.pop(next(iter(kept)))
    path = table_path()
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "wb") as out:
            out.write(marshal.dumps(kept))
        os.replace(temporary, path)
    except (OSError, ValueError):  # a read-only install: every run goes through Typer, as without the table
        with contextlib.suppress(OSError):
            os.unlink(temporary)
