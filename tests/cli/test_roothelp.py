"""`cfai --help` printed again from what an earlier run printed (cli/roothelp.py): the same bytes as Typer's,
without Typer, and through Typer again whenever anything the text depends on changed."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cfai_cli.cli import roothelp

# The console script, reporting at exit whether Typer was imported (the listing went through it).
PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write(f"\\nTYPER:{'typer' in sys.modules}\\n"))
from cfai_cli.cli.entry import main
sys.argv[0] = "cfai"
main()
"""


def _run(tmp_path: Path, *argv: str, **env: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    # A variable in the listing's key that does not change the text: each test's own keys, whatever earlier
    # runs kept in the installed cfai's table (CI installs one copy for the whole suite).
    isolated = {"_TYPER_STANDARD_TRACEBACK": f"test-{tmp_path.name}-{os.getpid()}"}
    run_env = {**os.environ, "CFAI_HOME": str(tmp_path), "COLUMNS": "90", **isolated, **env}
    run_env.pop("PYTHONDONTWRITEBYTECODE", None)
    if env.get("PYTHONDONTWRITEBYTECODE"):
        run_env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=run_env,
                          cwd=tmp_path, timeout=60)
    return done, done.stderr.rsplit("TYPER:", 1)[-1].strip() == "True"


def _typer_listing(tmp_path: Path, columns: str = "90") -> str:
    """What the full app prints through Typer, no kept text involved."""
    done = subprocess.run([sys.executable, "-c", "from cfai_cli.cli.app import app\napp(['--help'], prog_name='cfai')"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**os.environ, "CFAI_HOME": str(tmp_path), "COLUMNS": columns})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_second_help_prints_the_same_bytes_without_typer(tmp_path: Path) -> None:
    marker = str(len(tmp_path.parts) * 1000 + os.getpid() % 997)  # a key no other test's run has kept
    first, first_typer = _run(tmp_path, "--help", TERMINAL_WIDTH=marker)
    second, second_typer = _run(tmp_path, "--help", TERMINAL_WIDTH=marker)
    assert first.returncode == second.returncode == 0
    assert first_typer and not second_typer
    assert first.stdout == second.stdout == _typer_listing(tmp_path)
    assert "keygen" in second.stdout and "Exit statuses" in second.stdout


def test_another_width_goes_through_typer_and_prints_its_own_text(tmp_path: Path) -> None:
    _run(tmp_path, "--help")
    narrow, went_through = _run(tmp_path, "--help", COLUMNS="60")
    assert went_through and narrow.stdout == _typer_listing(tmp_path, columns="60")
    again, went_again = _run(tmp_path, "--help", COLUMNS="60")
    assert not went_again and again.stdout == narrow.stdout


def _table_path(tmp_path: Path) -> Path:
    """The table the console script's runs use: the installed cfai's (CI installs a copy, not this checkout)."""
    done = subprocess.run([sys.executable, "-c", "from cfai_cli.cli import roothelp; print(roothelp.table_path())"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, check=True)
    return Path(done.stdout.strip())


def test_a_changed_typer_or_module_is_a_miss(tmp_path: Path) -> None:
    _run(tmp_path, "-h")
    assert not _run(tmp_path, "-h")[1]
    table = _table_path(tmp_path)
    kept = marshal.loads(table.read_bytes())
    for found_key, (typer_init, _stamp, text) in list(kept.items()):
        kept[found_key] = (typer_init, (0, 0), text)  # as if Typer had been upgraded in place
    table.write_bytes(marshal.dumps(kept))
    done, went_through = _run(tmp_path, "-h")
    assert went_through and done.returncode == 0 and done.stdout == _typer_listing(tmp_path)
    assert not _run(tmp_path, "-h")[1]  # kept again, with the new stamp


def test_an_error_is_never_kept(tmp_path: Path) -> None:
    for _ in range(2):
        done, went_through = _run(tmp_path, "--bogus", "--help")
        assert went_through and done.returncode == 2 and "cfai: no such option: --bogus" in done.stderr


def test_nothing_is_kept_where_python_keeps_no_bytecode(tmp_path: Path) -> None:
    marker = f"no-bytecode-{os.getpid()}"
    for _ in range(2):
        done, went_through = _run(tmp_path, "--help", TERMINAL_WIDTH=marker, PYTHONDONTWRITEBYTECODE="1")
        assert went_through and done.returncode == 0


@pytest.mark.parametrize(("argv", "asks"), [
    ([], True), (["--help"], True), (["-q", "-h"], True), (["chat", "--help"], False), (["-q"], False),
])
def test_which_runs_ask_for_the_listing(argv: list[str], asks: bool) -> None:
    assert roothelp.asks_root_help(argv) is asks


def test_no_arguments_is_never_printed_from_the_table() -> None:
    assert not roothelp.printed([])  # `cfai` alone: click's usage error path, always through Typer
