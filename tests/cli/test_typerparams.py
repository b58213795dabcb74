"""Typer's parameters without a pydantic validator where the value needs none (cli/typerparams.py): every
parameter of every command gives the same value, or the same error, as through Typer's own validator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer import core
from typer._click import Context
from typer._coercion import build_runtime_param
from typer.main import get_command
from typer.testing import CliRunner

from cfai_cli.cli import typerparams
from cfai_cli.cli.app import build

# Values a parameter's conversion may be handed: none, plain text (a number's, a path's, a choice's too),
# repeated values, and what only a program passes (bytes, a number).
VALUES: tuple[Any, ...] = (None, "", "hi", "0", "1.5", "-3", "x y", "json", "./p", ("a", "b"), ["1"], (), b"raw", 7)


def _params(command: Any) -> Iterator[tuple[Any, Any]]:
    """(command, parameter) for every Typer parameter under `command`, subcommands included."""
    for param in command.params:
        if isinstance(param, core._TyperParameter):
            yield command, param
    for sub in getattr(command, "commands", {}).values():
        yield from _params(sub)


def _outcome(convert: Any, value: Any, param: Any, ctx: Context) -> tuple[str, Any]:
    try:
        return "value", convert(value, param, ctx)
    except Exception as exc:  # the error as a user would read it
        return type(exc).__name__, str(exc)


def _compare(root: Any) -> int:
    compared = 0
    for command, param in _params(root):
        ctx = Context(command, info_name=command.name)
        for value in VALUES:
            param._runtime_param = None  # as Typer left it: nothing built yet
            ours = _outcome(typerparams._runtime_param(param).coerce, value, param, ctx)
            theirs = _outcome(build_runtime_param(param.type_descriptor).coerce, value, param, ctx)
            assert ours == theirs, (command.name, param.name, value)
            assert type(ours[1]) is type(theirs[1])
            compared += 1
    return compared


def test_every_parameter_of_every_command_converts_as_typer_does() -> None:
    assert _compare(get_command(build())) > 1000


def test_a_parser_and_repeated_text_still_go_through_typers_validator() -> None:
    app = typer.Typer()

    @app.command()
    def run(shout: Annotated[str, typer.Option(parser=str.upper)] = "a",
            names: Annotated[list[str] | None, typer.Option("--name")] = None,
            word: Annotated[str | None, typer.Argument()] = None) -> None:
        """Only its parameters are used."""

    command = get_command(app)
    assert _compare(command) >= 3 * len(VALUES)
    ctx = Context(command, info_name="run")
    shout = next(p for p in command.params if p.name == "shout")
    assert typerparams._runtime_param(shout).coerce("hey", shout, ctx) == "HEY"
    names = next(p for p in command.params if p.name == "names")
    assert typerparams._runtime_param(names).coerce(None, names, ctx) == ()


def test_only_a_value_that_needs_converting_builds_typers_validator() -> None:
    command = get_command(build("chat")).commands["chat"]  # type: ignore[attr-defined]
    ctx = Context(command, info_name="chat")
    by_name = {p.name: p for p in command.params}
    for name, value in (("prompt", "hi"), ("model", None), ("attach", None), ("system", "be brief")):
        by_name[name]._runtime_param = None
        typerparams._runtime_param(by_name[name]).coerce(value, by_name[name], ctx)
        assert by_name[name]._runtime_param is None, name
    temperature = by_name["temperature"]
    temperature._runtime_param = None
    assert typerparams._runtime_param(temperature).coerce("0.5", temperature, ctx) == 0.5
    assert temperature._runtime_param is not None  # built and kept, as Typer keeps it


@pytest.mark.parametrize("argv", [
    ["chat", "--temperature", "x", "hi"], ["chat", "--temperature", "3", "hi"], ["chat", "--max-tokens", "0", "hi"],
    ["chat", "--timeout", "-1", "hi"], ["embed", "--bogus"], ["chat", "--help"], ["keys", "create", "--help"],
])
def test_errors_and_help_read_the_same(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.setenv("CFAI_HOME", str(tmp_path))
    runner = CliRunner()
    before = runner.invoke(build(), argv, prog_name="cfai")
    monkeypatch.setattr(core._TyperParameter, "get_runtime_param", typerparams._typers_own)
    typerparams.install()
    after = runner.invoke(build(), argv, prog_name="cfai")
    assert (after.exit_code, after.output) == (before.exit_code, before.output)
    assert core._TyperParameter.get_runtime_param is typerparams._runtime_param


def test_the_console_script_answers_without_typers_validators(tmp_path: Path) -> None:
    """`cfai chat --offline hi` as the console script runs it: the answer, and neither pydantic's TypeAdapters nor
    Typer's module that builds them imported for the command's parameters."""
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: sys.stderr.write(f\"\\nADAPTERS:{'typer._adapters' in sys.modules}\\n\"))\n"
             "from cfai_cli.cli.entry import main\nsys.argv[0] = 'cfai'\nmain()\n")
    env = {**os.environ, "CFAI_HOME": str(tmp_path)}
    for name in ("CFAI_OFFLINE", "CFAI_QUIET"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", probe, "chat", "--offline", "--no-log", "hi"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "ADAPTERS:False" in done.stderr
