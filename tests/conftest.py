"""Fixtures for every test: a private CFAI_HOME and no credentials or cfai settings leaking in from the shell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer.main
import typer.testing

_COMMANDS: dict[int, tuple[typer.Typer, object]] = {}


def _command_once(app: typer.Typer) -> object:
    """Typer's CliRunner builds the click command from the app on every invoke: it evaluates every command's
    annotations again (~30 commands, compile() and eval() each time), which was most of the CPU of the CLI
    tests. The real `cfai` builds it once per process; the tests now do the same (the command objects keep
    no state between invocations: each one gets its own click Context)."""
    built = _COMMANDS.get(id(app))
    if built is None or built[0] is not app:
        built = _COMMANDS[id(app)] = (app, typer.main.get_command(app))
    return built[1]


typer.testing._get_command = _command_once  # type: ignore[assignment]  # what CliRunner.invoke calls


@pytest.fixture(autouse=True)
def cfai_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point CFAI_HOME at a fresh directory and clear CLOUDFLARE_* / CFAI_* (DESIGN.md habit 8)."""
    for name in list(os.environ):
        if name.startswith(("CLOUDFLARE_", "CFAI_")):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("cfai-home")
    monkeypatch.setenv("CFAI_HOME", str(home))
    return home
