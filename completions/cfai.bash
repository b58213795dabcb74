_cfai_completion() {
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
