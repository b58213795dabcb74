#!/usr/bin/env bash
# Run OpenAI's Codex CLI (`codex exec`, headless) against a running `cfai serve --offline` and check that each
# run's tool call really ran and the follow-up turn answered. By hand, not in the test suite (the npm package
# ships a 424 MB binary). Last run with codex-cli 0.171.0:
#
#   npm install --prefix /tmp/codex @openai/codex
#   cfai serve --offline --no-auth --port 3457 &
#   CODEX=/tmp/codex/node_modules/.bin/codex scripts/try_codex.sh http://127.0.0.1:3457/v1
#
# The config is Codex's default plus one provider: no `model`, so Codex sends its default (gpt-6.2-sol in 0.171,
# which cfai serves as the gpt-6 alias). The `[emulator:call=...]` / `[emulator:args=...]` triggers make the
# emulated model call one named tool with real arguments.
set -u
BASE=${1:-http://127.0.0.1:3457/v1}
CODEX=${CODEX:-codex}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/home" "$WORK/scratch"
cat > "$WORK/home/config.toml" <<EOF
model_provider = "cfai"

[model_providers.cfai]
name = "cfai"
base_url = "$BASE"
env_key = "CFAI_KEY"
wire_api = "responses"
EOF
echo "hello" > "$WORK/scratch/notes.txt"
export CODEX_HOME="$WORK/home" CFAI_KEY=${CFAI_KEY:-unused-with-no-auth} RUST_LOG=${RUST_LOG:-warn}
passed=0 failed=0

run() {  # run NAME EXPECTED-IN-OUTPUT CODEX-ARGS...
  local name=$1 expected=$2
  shift 2
  if (cd "$WORK/scratch" && "$CODEX" exec --skip-git-repo-check "$@" > "$WORK/out" 2> "$WORK/err") \
      && grep -q "$expected" "$WORK/out" "$WORK/err"; then
    echo "PASS  $name"; passed=$((passed + 1))
  else
    echo "FAIL  $name"; tail -n 20 "$WORK/err"; failed=$((failed + 1))
  fi
}

"$CODEX" --version
run "default model: exec (JavaScript) runs ls, then answers" "notes.txt" \
  'list the files here [emulator:call=exec] [emulator:args={"input": "text(await tools.exec_command({cmd: \"ls\"}))"}]'
run "gpt-5.5: exec_command runs ls, then answers" "notes.txt" -m gpt-5.5 \
  'list the files here [emulator:call=exec_command] [emulator:args={"cmd": "ls"}]'
run "gpt-5.5: apply_patch (custom tool) adds a file" "A hello.txt" -m gpt-5.5 -s workspace-write \
  'add hello.txt [emulator:call=apply_patch] [emulator:args={"input": "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch"}]'
run "gpt-4o (Llama 4 Scout, native tools): exec_command runs ls" "notes.txt" -m gpt-4o \
  'list the files here [emulator:call=exec_command] [emulator:args={"cmd": "ls"}]'
run "reasoning effort max" "offline" -c 'model_reasoning_effort="max"' 'hello'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
