"""The garbage collector while `cfai` starts (cli/collector.py): paused for start-up's imports, on for every
command, and untouched in a process the console script did not start."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfai_cli.cli import collector

# Run as the console script runs, then report the collector's state at exit (after the command's own work).
PROBE = """
import atexit, gc, sys
atexit.register(lambda: sys.stderr.write(f"\\nGC:{gc.isenabled()}:{gc.get_freeze_count()}\\n"))
from cfai_cli.cli.entry import main
sys.argv[0] = "cfai"
main()
"""


@pytest.fixture
def owned(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as the console script's: the collector restored (and what was frozen thawed) afterwards."""
    monkeypatch.setattr(collector, "_owned", False)
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def _gc_at_exit(tmp_path: Path, *argv: str, **extra: str) -> tuple[bool, int, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "CFAI_HOME": str(tmp_path), **extra}
    for name in ("CFAI_OFFLINE", "CFAI_QUIET", "PYTHONDONTWRITEBYTECODE"):  # bytecode written, as for a user
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    enabled, frozen = done.stderr.rsplit("GC:", 1)[-1].strip().split(":")
    return enabled == "True", int(frozen), done


def test_a_one_shot_runs_with_the_collector_on_and_start_up_frozen(tmp_path: Path) -> None:
    enabled, frozen, done = _gc_at_exit(tmp_path, "chat", "--offline", "--no-log", "hi")
    assert done.returncode == 0 and "You said: hi" in done.stdout
    assert enabled and frozen > 50_000  # the modules, classes and schemas start-up made, never walked again


def test_every_command_runs_with_the_collector_on(tmp_path: Path) -> None:
    enabled, frozen, done = _gc_at_exit(tmp_path, "config", "path")
    assert done.returncode == 0 and str(tmp_path) in done.stdout
    assert enabled and frozen > 0  # `cfai serve` and an interactive chat go the same way: the root settles


def test_the_root_help_never_turns_it_on(tmp_path: Path) -> None:
    marker = f"collector-{os.getpid()}-{len(str(tmp_path))}"  # a listing no earlier run kept (cli/roothelp.py)
    enabled, frozen, done = _gc_at_exit(tmp_path, "--help", TERMINAL_WIDTH=marker)
    assert done.returncode == 0 and "Usage: cfai" in done.stdout
    assert not enabled and frozen == 0  # through Typer, it prints and exits: nothing to collect
    enabled, frozen, again = _gc_at_exit(tmp_path, "--help", TERMINAL_WIDTH=marker)
    assert again.stdout == done.stdout
    assert enabled and frozen == 0  # the kept listing is printed before the collector is taken over


def test_own_pauses_and_settle_freezes_and_resumes(owned: None) -> None:
    before = gc.get_freeze_count()
    collector.own()
    assert not gc.isenabled()
    kept = [object() for _ in range(10)]
    collector.settle()
    settled = gc.get_freeze_count()
    assert gc.isenabled() and settled >= before + len(kept)
    kept.append(object())
    collector.settle()  # once on, a second settle freezes nothing more
    assert gc.get_freeze_count() == settled


def test_importing_pauses_then_settles_even_when_an_import_fails(owned: None) -> None:
    collector.own()
    collector.settle()
    with pytest.raises(ImportError), collector.importing():
        assert not gc.isenabled()
        raise ImportError("no such module")
    assert gc.isenabled()


def test_a_process_the_console_script_did_not_start_keeps_its_collector() -> None:
    assert not collector._owned  # the test run is such a process
    frozen = gc.get_freeze_count()
    collector.settle()
    with collector.importing():
        assert gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
