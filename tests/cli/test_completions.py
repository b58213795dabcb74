"""Shell completion: the committed scripts match a fresh generation, and a real bash completes cfai's words."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from generate_completions import DIRECTORY, SHELLS, scripts  # noqa: E402

BASH = shutil.which("bash")


def test_committed_scripts_match_a_fresh_generation() -> None:
    for name, text in scripts().items():
        committed = (DIRECTORY / name).read_text(encoding="utf-8")
        assert committed == text, f"completions/{name} is stale: run python scripts/generate_completions.py"


def bash_words(line: str) -> list[str]:
    """The words bash's readline makes of `line` with the default COMP_WORDBREAKS: split at blanks, and each
    run of break characters (@, :, = ...) a word of its own; past a trailing blank, a new empty word."""
    words = re.findall(r"[@:=><;|&(]+|[^\s@:=><;|&(]+", line)
    return [*words, ""] if not line or line[-1].isspace() else words


def complete(line: str, home: Path, script: Path = DIRECTORY / "cfai.bash") -> list[str]:
    """COMPREPLY after sourcing `script` (completions/cfai.bash) in a real bash and asking for the completion of
    `line` with the cursor at its end, as bash sets the COMP_* variables."""
    assert BASH is not None
    cfai_dir = str(Path(sys.executable).parent)  # where the `cfai` console script is installed
    words = bash_words(line)
    script = f"""
source {shlex.quote(str(script))}
COMP_LINE={shlex.quote(line)}
COMP_POINT={len(line)}
COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})
COMP_CWORD={len(words) - 1}
_cfai_completion cfai
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": cfai_dir + os.pathsep + os.environ.get("PATH", ""), "CFAI_HOME": str(home)}
    done = subprocess.run([BASH, "--norc", "--noprofile", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60, check=True)
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.skipif(BASH is None or shutil.which("cfai", path=str(Path(sys.executable).parent)) is None,
                    reason="needs bash and the installed cfai command")
def test_bash_completes_commands_options_and_models(cfai_home: Path) -> None:
    assert complete("cfai ch", cfai_home) == ["chat"]
    assert set(complete("cfai ", cfai_home)) >= {"chat", "embed", "image", "serve", "keygen", "models"}
    assert "--max-tokens" in complete("cfai chat --max", cfai_home)
    assert "gpt-4o-mini" in complete("cfai chat -m gpt-4o", cfai_home)
    (cfai_home / "models-cache.json").write_text(json.dumps(["@cf/meta/llama-3.3-70b-instruct-fp8-fast"]))
    # bash's current word is "cf/meta/ll" (the @ is a word break): the reply replaces just that part.
    assert bash_words("cfai chat -m @cf/meta/ll")[-2:] == ["@", "cf/meta/ll"]
    assert complete("cfai chat -m @cf/meta/ll", cfai_home) == ["cf/meta/llama-3.3-70b-instruct-fp8-fast"]
    assert complete("cfai chat -m @", cfai_home) == ["@cf/meta/llama-3.3-70b-instruct-fp8-fast"]
    assert complete('cfai chat "two words" -m @cf/meta/ll', cfai_home) == ["cf/meta/llama-3.3-70b-instruct-fp8-fast"]


@pytest.mark.skipif(BASH is None or shutil.which("cfai", path=str(Path(sys.executable).parent)) is None,
                    reason="needs bash and the installed cfai command")
def test_bash_offers_the_models_of_the_commands_task_and_option_values(cli, cfai_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("models", "--offline", "--json").exit_code == 0  # fills the cache with ids and their tasks
    chat = complete("cfai chat -m @cf/", cfai_home)
    embed = complete("cfai embed -m ", cfai_home)
    assert "cf/meta/llama-3.3-70b-instruct-fp8-fast" in chat and "cf/baai/bge-base-en-v1.5" not in chat
    assert "@cf/baai/bge-base-en-v1.5" in embed and "text-embedding-3-small" in embed  # an alias, by its target
    assert "@cf/meta/llama-3.3-70b-instruct-fp8-fast" not in embed and "gpt-4o-mini" not in embed
    assert "whisper-1" in complete("cfai transcribe x.wav -m ", cfai_home)
    assert "whisper-1" not in complete("cfai image -m ", cfai_home)
    assert complete("cfai transcribe x.wav --format v", cfai_home) == ["verbose_json", "vtt"]
    assert complete("cfai speak hi --format ", cfai_home) == ["mp3", "wav", "flac", "opus", "aac", "pcm"]
    assert complete("cfai usage --by ", cfai_home) == ["key", "model", "day", "route", "upstream"]
    assert complete("cfai image x --size 10", cfai_home) == ["1024x1024", "1024x1536", "1024x1792"]
    assert complete("cfai speak hi --voice a", cfai_home) == ["alloy", "ash", "angus", "arcas", "asteria", "athena"]


def test_the_enumerations_match_what_is_accepted() -> None:
    from typing import get_args

    from cfai_cli.cli.speak import FORMATS
    from cfai_cli.cli.usage import BY
    from cfai_cli.core.openai.audio import SpeechFormat
    from cfai_cli.store.usage import GROUPS

    assert set(FORMATS) == set(get_args(SpeechFormat)) and BY == GROUPS
    from cfai_cli.cli.image import SIZES
    from cfai_cli.cli.speak import VOICES
    from cfai_cli.core.translate.images import OPENAI_SIZES
    from cfai_cli.core.translate.speech import AURA_1_SPEAKERS, MELOTTS_LANGUAGES, OPENAI_VOICES

    assert set(SIZES) == OPENAI_SIZES and len(SIZES) == len(OPENAI_SIZES)
    assert set(VOICES) == OPENAI_VOICES | set(AURA_1_SPEAKERS) | set(MELOTTS_LANGUAGES)


def test_models_command_fills_the_completion_cache(cli, cfai_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("models", "--offline", "--json").exit_code == 0
    cached = json.loads((cfai_home / "models-cache.json").read_text())
    assert "@cf/meta/llama-3.3-70b-instruct-fp8-fast" in cached


def test_install_and_show_completion_give_cfais_own_scripts(cfai_home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cfai_cli.cli.app import build

    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # the shell is named, not detected
    monkeypatch.setenv("HOME", str(tmp_path))
    fresh = build()  # Typer reads that variable when it builds the command: not the session's shared one

    def cli(*args: str) -> Any:
        return CliRunner().invoke(fresh, list(args), catch_exceptions=False)

    committed = {name: (DIRECTORY / name).read_text(encoding="utf-8").strip() for name in SHELLS.values()}
    for shell, name in SHELLS.items():
        shown = cli("--show-completion", shell)
        assert shown.exit_code == 0 and shown.stdout.strip() == committed[name]
    installed = cli("--install-completion", "bash")
    assert installed.exit_code == 0, installed.stderr
    script = tmp_path / ".bash_completions" / "cfai.sh"
    assert script.read_text().strip() == committed["cfai.bash"]
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    if BASH is not None and shutil.which("cfai", path=str(Path(sys.executable).parent)) is not None:
        (cfai_home / "models-cache.json").write_text(json.dumps(["@cf/meta/llama-3.3-70b-instruct-fp8-fast"]))
        assert complete("cfai chat -m @cf/meta/ll", cfai_home, script) == ["cf/meta/llama-3.3-70b-instruct-fp8-fast"]
