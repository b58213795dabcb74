"""cfai's own shell completion script for bash, and `cfai --install-completion` / `--show-completion` using it.

Imports typer's completion tables only (already loaded with typer: no start-up cost). bash splits the word
being completed at the characters in COMP_WORDBREAKS, `@` and `:` among them, so Typer's generic bash script
would ask for completions of `cf/meta/ll` instead of `@cf/meta/ll` (and of `llama` instead of `groq:llama`).
Ours hands cfai the line as typed (quotes and all, split by Click like a shell) and takes off the replies the
part bash keeps in front of its own current word. `use_cfai_scripts()` puts it where Typer's
`--install-completion`, `--show-completion` and `_CFAI_COMPLETE=source_bash` look, so every way of getting
cfai's bash completion gets this one (completions/cfai.bash is the same text; tests/cli/test_completions.py
checks both and that Typer still reads its scripts from there). zsh and fish keep Typer's scripts, which see
whole words.
"""

from __future__ import annotations

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


def use_cfai_scripts() -> None:
    """Make Typer's completion options install and show cfai's bash script instead of its generic one."""
    from typer import _completion_classes, _completion_shared

    # Typer fills its templates with %-formatting (prog name, function, variable): ours names them already.
    template = BASH.replace("%", "%%")
    _completion_shared._completion_scripts["bash"] = template
    _completion_classes.BashComplete.source_template = template
