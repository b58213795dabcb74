"""Shell completion: the committed scripts match a fresh generation, and a real bash completes cfai's words."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from generate_completions import DIRECTORY, scripts  # noqa: E402

BASH = shutil.which("bash")


def test_committed_scripts_match_a_fresh_generation() -> None:
    for name, text in scripts().items():
        committed = (DIRECTORY / name).read_text(encoding="utf-8")
        assert committed == text, f"completions/{name} is stale: run python scripts/generate_completions.py"


def complete(words: str, cword: int, home: Path) -> list[str]:
    """COMPREPLY after sourcing completions/cfai.bash in a real bash and asking for the completion."""
    assert BASH is not None
    cfai_dir = str(Path(sys.executable).parent)  # where the `cfai` console script is installed
    script = f"""
source {DIRECTORY / 'cfai.bash'}
COMP_WORDS=({words})
COMP_CWORD={cword}
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
    assert complete("cfai ch", 1, cfai_home) == ["chat"]
    assert set(complete("cfai ", 1, cfai_home)) >= {"chat", "embed", "image", "serve", "keygen", "models"}
    assert "--max-tokens" in complete("cfai chat --max", 2, cfai_home)
    assert "gpt-4o-mini" in complete("cfai chat -m gpt-4o", 3, cfai_home)
    (cfai_home / "models-cache.json").write_text(json.dumps(["@cf/meta/llama-3.3-70b-instruct-fp8-fast"]))
    assert complete("cfai chat -m @cf/meta/ll", 3, cfai_home) == ["@cf/meta/llama-3.3-70b-instruct-fp8-fast"]


def test_models_command_fills_the_completion_cache(cli, cfai_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("models", "--offline", "--json").exit_code == 0
    cached = json.loads((cfai_home / "models-cache.json").read_text())
    assert "@cf/meta/llama-3.3-70b-instruct-fp8-fast" in cached
