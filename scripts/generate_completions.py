"""Regenerate the shell completion scripts in completions/ from the installed Typer (bash, zsh, fish).

Run `python scripts/generate_completions.py` after upgrading Typer; tests/cli/test_completions.py fails
when the committed scripts and a fresh generation differ. The scripts call `cfai` back for the words.

bash's is cfai's own: bash splits the word being completed at the characters in COMP_WORDBREAKS, `@` and `:`
among them, so Typer's script would ask for completions of `cf/meta/ll` instead of `@cf/meta/ll` (and of
`llama` instead of `groq:llama`). Ours hands cfai the line as typed (quotes and all, split by Click like a
shell) and takes off the replies the part bash keeps in front of its own current word.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer._completion_shared import get_completion_script

SHELLS = {"bash": "cfai.bash", "zsh": "_cfai", "fish": "cfai.fish"}
DIRECTORY = Path(__file__).resolve().parents[1] / "completions"


BASH = r"""_cfai_completion() {
    local IFS=$'\n'
    local line="${COMP_LINE:0:COMP_POINT}"
    local cur="${COMP_WORDS[COMP_CWORD]}"
    # The word under the cursor as typed: after the last blank (bash's own word stops at @ or :).
    local typed="${line##*[[:blank:]]}"
    # COMP_CWORD -1: complete the last word of the line; past its end (after a blank): a new, empty word.
    local cword=-1
    [[ -z "$typed" ]] && cword=100000
    local replies=( $( env COMP_WORDS="$line" COMP_CWORD=$cword _CFAI_COMPLETE=complete_bash "$1" ) )
    local keep=""
    [[ "$typed" == *"$cur" ]] && keep="${typed%"$cur"}"
    COMPREPLY=( "${replies[@]#"$keep"}" )
    return 0
}

complete -o default -F _cfai_completion cfai
"""


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
