"""Regenerate the shell completion scripts in completions/ from the installed Typer (bash, zsh, fish).

Run `python scripts/generate_completions.py` after upgrading Typer; tests/cli/test_completions.py fails
when the committed scripts and a fresh generation differ. The scripts call `cfai` back for the words.

bash's is cfai's own (cfai_cli/cli/completion.py, which says why); `cfai --install-completion` installs the
same scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer._completion_shared import get_completion_script

from cfai_cli.cli.completion import BASH

SHELLS = {"bash": "cfai.bash", "zsh": "_cfai", "fish": "cfai.fish"}
DIRECTORY = Path(__file__).resolve().parents[1] / "completions"


def scripts() -> dict[str, str]:
    made = {name: get_completion_script(prog_name="cfai", complete_var="_CFAI_COMPLETE", shell=shell).strip() + "\n"
            for shell, name in SHELLS.items()}
    return made | {SHELLS["bash"]: BASH}


def main() -> int:
    DIRECTORY.mkdir(exist_ok=True)
    for name, text in scripts().items():
        (DIRECTORY / name).write_text(text, encoding="utf-8")
        print(f"wrote completions/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
