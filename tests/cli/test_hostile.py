"""Every command, walked from the Typer app itself, with hostile arguments: never a traceback.

For each (sub)command the app registers, each of its arguments and options in turn gets empty, blank,
huge, negative, missing-file, directory and bad-model values (the others plausible), with binary stdin and
--offline. Whatever happens, the exit status is a documented one, nothing says "Traceback", and a failure
ends in one `cfai:` line on stderr. The runner is told not to catch exceptions, so a bug fails the test
with its own traceback. `cfai serve` gets every check but the never-ending server itself.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cfai_cli.cli.app import app
from cfai_cli.errors import ExitCode

DOCUMENTED = {int(code) for code in ExitCode}
HOSTILE = ("", "   ", "99999999999999999999", "-1", "/nonexistent/cfai-hostile", "{dir}", "no-such-model-xyz")


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = zlib.compress(b"\x00\xff\x00\x00" * 1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


STDINS = {"png": _png(), "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "latin1": "café crème\n".encode("latin-1"),
          "random": bytes(range(256)) * 4}


def _commands() -> Iterator[tuple[list[str], Any]]:
    """(path, click command) of every leaf command, found by walking the app's registered groups."""
    root = typer.main.get_command(app)

    def walk(path: list[str], command: Any) -> Iterator[tuple[list[str], Any]]:
        children = getattr(command, "commands", None)
        if children:
            for name, child in sorted(children.items()):
                yield from walk([*path, name], child)
        else:
            yield path, command

    yield from walk([], root)


COMMANDS = list(_commands())


def _plausible(param: Any) -> list[str]:
    """A value for a parameter that is not under attack (so the attacked one is what gets checked)."""
    if getattr(param, "is_flag", False):
        return []
    value = "1" if param.bare_type() in (int, float) else "hello"
    return [value] * (param.nargs if param.nargs > 0 else 1)


def _argvs(path: list[str], command: Any, directory: Path) -> Iterator[list[str]]:
    params = [p for p in command.params if p.name not in ("help",)]
    options = [p for p in params if p.param_type_name == "option" and not getattr(p, "is_flag", False)]
    arguments = [p for p in params if p.param_type_name == "argument"]
    offline = ["--offline"] if any("--offline" in p.opts for p in params) else []
    base_args = [v for a in arguments for v in _plausible(a)]
    yield [*path, *offline]
    yield [*path, *offline, *base_args]
    for value in HOSTILE:
        value = value.replace("{dir}", str(directory))
        for index in range(len(arguments)):
            args = [v for j, a in enumerate(arguments) for v in ([value] if j == index else _plausible(a))]
            yield [*path, *offline, *args]
        for option in options:
            values = [value] * max(option.nargs, 1)
            yield [*path, *offline, option.opts[0], *values, *base_args]


def _ids() -> list[str]:
    return [" ".join(path) for path, _ in COMMANDS]


def test_the_walk_finds_every_command() -> None:
    names = set(_ids())
    for expected in ("chat", "image", "transcribe", "speak", "embed", "rerank", "moderate", "tokens", "models",
                     "serve", "usage", "config show", "config set", "keys list", "keys revoke", "cache clear",
                     "batch submit", "batch list", "batch show", "batch cancel", "batch download", "batch wait"):
        assert expected in names, expected


def _check(argv: list[str], stdin: bytes | None) -> None:
    result = CliRunner().invoke(app, argv, input=stdin, catch_exceptions=False)
    shown = f"cfai {' '.join(argv)!r} <{len(stdin or b'')} bytes>: status {result.exit_code}\n{result.stderr}"
    assert result.exit_code in DOCUMENTED, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    if result.exit_code != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()]
        assert last and last[-1].startswith("cfai:"), shown


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=_ids())
def test_hostile_arguments_never_crash(path: list[str], command: Any, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import cfai_cli.server.app as server_app

    monkeypatch.setattr(server_app, "serve", lambda *args, **kwargs: None)  # the one call that never returns
    monkeypatch.chdir(tmp_path)  # files a command writes by default land here
    for n, argv in enumerate(_argvs(path, command, tmp_path)):
        stdin = list(STDINS.values())[n % len(STDINS)]
        _check(argv, stdin)


@pytest.mark.parametrize("kind", sorted(STDINS))
@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=_ids())
def test_binary_stdin_never_crashes(path: list[str], command: Any, kind: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import cfai_cli.server.app as server_app

    monkeypatch.setattr(server_app, "serve", lambda *args, **kwargs: None)
    monkeypatch.chdir(tmp_path)
    offline = ["--offline"] if any("--offline" in p.opts for p in command.params) else []
    for argv in ([*path, *offline], [*path, *offline, "-"], [*path, *offline, "hello", "-"]):
        _check(argv, STDINS[kind])
