"""-o is checked before any work (image, transcribe, speak) and blank prompts are refused like empty ones.

Without --offline and without credentials, a command that got past its -o check would fail on credentials
(exit 3): exit 2 naming -o proves the check came first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cfai_cli.errors import ExitCode
from tests.cli.conftest import Invoke


def _last(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("cfai: ")
    return lines[-1]


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "in.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    return path


def _cases(tmp: Path, audio: Path) -> list[tuple[list[str], str]]:
    (tmp / "taken.png").write_bytes(b"x")
    (tmp / "file").write_text("x")
    commands = [["image", "a fox"], ["transcribe", str(audio)], ["speak", "hello"]]
    cases = []
    for command in commands:
        cases += [([*command, "-o", str(tmp)], "is a directory"),
                  ([*command, "-o", str(tmp / "missing" / "out.png")], "does not exist; create it first"),
                  ([*command, "-o", str(tmp / "file" / "out.png")], "is a file, not a directory")]
    cases += [(["image", "a fox", "-o", str(tmp / "taken.png")], "exists; use --force"),
              (["image", "a fox", "-o", str(tmp), "--force"], "is a directory")]
    return cases


def test_output_is_checked_before_anything_runs(cli: Invoke, tmp_path: Path, audio: Path) -> None:
    for args, words in _cases(tmp_path, audio):
        result = cli(*args)
        assert result.exit_code == ExitCode.USAGE, (args, result.stderr)
        assert words in _last(result.stderr), (args, result.stderr)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_directory_is_refused(cli: Invoke, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = cli("image", "a fox", "-o", str(locked / "fox.png"))
    assert result.exit_code == ExitCode.USAGE
    assert "permission denied" in _last(result.stderr)


def test_force_overwrites_a_file_in_image(cli: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "taken.png"
    target.write_bytes(b"x")
    result = cli("image", "--offline", "a fox", "-o", str(target), "--force")
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes() != b"x"


@pytest.mark.parametrize("args", [["chat", "   "], ["image", " \t "], ["speak", "  ", "-o", "x.mp3"],
                                  ["moderate", "  "], ["image", "edit", "in.png", "  "]])
def test_blank_prompts_are_refused_like_empty_ones(cli: Invoke, args: list[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli(*args[:1], "--offline", *args[1:])
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "empty" in _last(result.stderr) or "nothing to" in _last(result.stderr)
    assert result.stdout == ""
