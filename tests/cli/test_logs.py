"""The exchange log through the CLI, against the emulator: `cfai chat` writes a row per exchange, `cfai logs`
shows them, `-c` and `--cid` continue a conversation through either API.

The emulator counts one prompt token per word of every message it is sent, so a continued exchange's
`prompt_tokens` says exactly which earlier turns went with it.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.errors import ExitCode
from tests.cli.conftest import Invoke
from tests.cli.test_hostile import STDINS


def rows(home: Path) -> list[dict[str, Any]]:
    path = home / "logs.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM exchanges ORDER BY id")]


def whole(cli: Invoke, *args: str) -> dict[str, Any]:
    """A --no-stream --json chat answer (chat.completion or Response)."""
    result = cli("chat", "--offline", "--no-stream", "--json", *args)
    assert result.exit_code == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def words(text: str) -> int:
    return len(text.split())


def test_a_one_shot_is_logged_with_its_figures(cli: Invoke, cfai_home: Path) -> None:
    result = cli("chat", "--offline", "-s", "Be brief", "-m", "gpt-4", "My name is Ada")
    assert result.exit_code == 0, result.stderr
    [row] = rows(cfai_home)
    assert row["api"] == "chat" and row["model_asked"] == "gpt-4"
    assert row["model"] == "@cf/meta/llama-3.3-70b-instruct-fp8-fast"  # as resolved
    assert row["prompt"] == "My name is Ada" and row["system"] == "Be brief"
    assert json.loads(row["messages"]) == [{"role": "user", "content": "My name is Ada"}]
    assert row["answer"] + "\n" == result.stdout
    assert row["prompt_tokens"] == words("Be brief My name is Ada")
    assert row["completion_tokens"] == words(row["answer"])
    assert row["neurons"] > 0 and row["neurons_estimated"] == 1  # streams report no neurons: estimated
    assert row["duration_ms"] > 0 and len(row["cid"]) == 12 and row["response_id"] is None
    assert stat.S_IMODE(os.stat(cfai_home / "logs.db").st_mode) == 0o600


def test_responses_and_whole_answers_are_logged(cli: Invoke, cfai_home: Path) -> None:
    response = whole(cli, "--responses", "hello there")
    completion = whole(cli, "hi")
    first, second = rows(cfai_home)
    assert (first["api"], first["response_id"], first["prompt"]) == ("responses", response["id"], "hello there")
    assert first["answer"] == response["output_text"]
    assert first["prompt_tokens"] == response["usage"]["input_tokens"]
    assert second["answer"] == completion["choices"][0]["message"]["content"]
    assert second["neurons_estimated"] == 0  # a whole answer carries Workers AI's own count
    assert first["cid"] != second["cid"]


@pytest.mark.parametrize("how", ["flag", "config", "environment"])
def test_opting_out_writes_nothing(cli: Invoke, cfai_home: Path, how: str) -> None:
    args, env = (["--no-log"] if how == "flag" else []), ({"CFAI_LOG": "0"} if how == "environment" else None)
    if how == "config":
        (cfai_home / "config.toml").write_text("log = false\n")
    result = cli("chat", "--offline", *args, "hello", env=env)
    assert result.exit_code == 0 and "You said: hello" in result.stdout
    assert rows(cfai_home) == []


def test_logs_off_on_and_status(cli: Invoke, cfai_home: Path) -> None:
    assert cli("logs", "off").stdout == "exchange logging is off\n"
    cli("chat", "--offline", "unlogged")
    status = json.loads(cli("logs", "status", "--json").stdout)
    assert (status["logging"], status["source"], status["exchanges"]) == (False, "file", 0)
    cli("logs", "on")
    cli("chat", "--offline", "logged")
    assert [r["prompt"] for r in rows(cfai_home)] == ["logged"]
    status = json.loads(cli("logs", "status", "--json").stdout)
    assert (status["logging"], status["exchanges"], status["conversations"]) == (True, 1, 1)
    assert cli("logs", "path").stdout == f"{cfai_home / 'logs.db'}\n"


def test_logs_shows_the_newest_last_and_filters(cli: Invoke) -> None:
    for prompt in ("alpha one", "bravo two", "charlie three", "delta four"):
        cli("chat", "--offline", prompt)
    shown = cli("logs").stdout  # piped: plain text, the last 3
    assert "alpha" not in shown
    assert shown.index("> bravo two") < shown.index("> charlie three") < shown.index("> delta four")
    assert "You said: delta four" in shown
    every = json.loads(cli("logs", "-n", "0", "--json").stdout)
    assert [x["prompt"] for x in every] == ["alpha one", "bravo two", "charlie three", "delta four"]
    assert all(len(x["cid"]) == 12 for x in every)
    found = json.loads(cli("logs", "-q", "CHARLIE", "--json").stdout)
    assert [x["prompt"] for x in found] == ["charlie three"]
    assert json.loads(cli("logs", "-q", "two bravo", "--json").stdout)[0]["prompt"] == "bravo two"
    assert json.loads(cli("logs", "-q", "bravo four", "--json").stdout) == []
    assert json.loads(cli("logs", "-q", "%", "--json").stdout) == []  # LIKE's wildcards are plain text
    cid = every[1]["cid"]
    assert [x["prompt"] for x in json.loads(cli("logs", "list", "--cid", cid, "--json").stdout)] == ["bravo two"]
    assert f"cid {cid}" in cli("logs", "--cid", cid).stdout
    assert json.loads(cli("logs", "--since", "1h", "-n", "1", "--json").stdout)[0]["prompt"] == "delta four"
    assert json.loads(cli("logs", "--since", "2000-01-01", "--json").stdout)[0]["prompt"] == "bravo two"
    bad = cli("logs", "--since", "yesterday")
    assert bad.exit_code == ExitCode.USAGE and "--since" in bad.stderr


def test_continue_sends_the_earlier_turns_through_chat_completions(cli: Invoke, cfai_home: Path) -> None:
    first = whole(cli, "My name is Ada")
    answer = first["choices"][0]["message"]["content"]
    second = whole(cli, "-c", "What is my name?")
    assert second["object"] == "chat.completion"  # -c no longer means --responses
    assert second["usage"]["prompt_tokens"] == words("My name is Ada") + words(answer) + words("What is my name?")
    third = whole(cli, "--continue", "And again?")
    assert third["usage"]["prompt_tokens"] == second["usage"]["prompt_tokens"] + words(
        second["choices"][0]["message"]["content"]) + words("And again?")
    logged = rows(cfai_home)
    assert len({r["cid"] for r in logged}) == 1
    assert [json.loads(r["messages"]) for r in logged][1] == [{"role": "user", "content": "What is my name?"}]


def test_continue_keeps_the_system_prompt_and_the_model_unless_told(cli: Invoke, cfai_home: Path) -> None:
    whole(cli, "-m", "gpt-4o-mini", "-s", "Answer in French", "hello")
    kept = whole(cli, "-c", "again")
    assert kept["model"] == "@cf/meta/llama-3.1-8b-instruct-fast"
    history = words("Answer in French hello") + kept["usage"]["completion_tokens"]  # same canned length
    assert kept["usage"]["prompt_tokens"] == history + words("again")
    changed = whole(cli, "-c", "-m", "@cf/meta/llama-3.3-70b-instruct-fp8-fast", "-s", "Be brief", "more")
    assert changed["model"] == "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
    assert [r["model_asked"] for r in rows(cfai_home)] == ["gpt-4o-mini", "gpt-4o-mini",
                                                           "@cf/meta/llama-3.3-70b-instruct-fp8-fast"]
    assert rows(cfai_home)[2]["system"] == "Be brief"


def test_continue_a_responses_exchange_either_way(cli: Invoke, cfai_home: Path) -> None:
    first = whole(cli, "--responses", "My name is Ada")
    # Through the Responses API: the stored response is continued by its id.
    second = whole(cli, "-c", "--responses", "What is my name?")
    assert second["previous_response_id"] == first["id"]
    assert second["usage"]["input_tokens"] == (first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
                                               + words("What is my name?"))
    # Through chat completions: the history is rebuilt from the log.
    third = whole(cli, "-c", "And again?")
    assert third["usage"]["prompt_tokens"] == (second["usage"]["input_tokens"] + second["usage"]["output_tokens"]
                                               + words("And again?"))
    # Back to the Responses API after a chat exchange: no stored response to chain to, the history goes as input.
    fourth = whole(cli, "-c", "--responses", "Last one")
    assert fourth["previous_response_id"] is None
    assert fourth["usage"]["input_tokens"] == (third["usage"]["prompt_tokens"]
                                               + third["usage"]["completion_tokens"] + words("Last one"))
    logged = rows(cfai_home)
    assert [r["api"] for r in logged] == ["responses", "responses", "chat", "responses"]
    assert len({r["cid"] for r in logged}) == 1


def test_a_deleted_response_is_replaced_by_the_logged_history(cli: Invoke, cfai_home: Path) -> None:
    first = whole(cli, "--responses", "My name is Ada")
    with sqlite3.connect(cfai_home / "cfai.db") as conn:
        conn.execute("DELETE FROM responses")
    second = whole(cli, "-c", "--responses", "What is my name?")
    assert second["previous_response_id"] is None
    assert second["usage"]["input_tokens"] == (first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
                                               + words("What is my name?"))


def test_cid_continues_an_older_conversation(cli: Invoke, cfai_home: Path) -> None:
    whole(cli, "I like tea")
    whole(cli, "Something else entirely, in many more words than the first")
    older, newer = rows(cfai_home)
    result = whole(cli, "--cid", older["cid"], "What do I like?")
    assert result["usage"]["prompt_tokens"] == words("I like tea") + older["completion_tokens"] + words(
        "What do I like?")
    assert rows(cfai_home)[-1]["cid"] == older["cid"]
    by_prefix = whole(cli, "--cid", older["cid"][:6], "--responses", "And?")
    assert by_prefix["usage"]["input_tokens"] > result["usage"]["prompt_tokens"]
    assert rows(cfai_home)[-1]["cid"] == older["cid"] != newer["cid"]


def test_unknown_conversations_are_errors(cli: Invoke, cfai_home: Path) -> None:
    none_yet = cli("chat", "--offline", "-c", "hi")
    assert none_yet.exit_code == ExitCode.INVALID_REQUEST and "no conversation to continue" in none_yet.stderr
    whole(cli, "hello")
    cid = rows(cfai_home)[0]["cid"]
    unknown = cli("chat", "--offline", "--cid", cid[:5] + "zzz", "hi")
    assert unknown.exit_code == ExitCode.INVALID_REQUEST and unknown.stdout == ""
    assert unknown.stderr.splitlines()[-1] == (f"cfai: No conversation '{cid[:5]}zzz' in the exchange log. Did you "
                                               f"mean {cid}?")
    both = cli("chat", "--offline", "-c", "--cid", cid, "hi")
    assert both.exit_code == ExitCode.USAGE
    (cfai_home / "config.toml").write_text("log = false\n")
    off = cli("chat", "--offline", "-c", "hi")
    assert off.exit_code == ExitCode.INVALID_REQUEST and "log is off" in off.stderr
    assert len(rows(cfai_home)) == 1


def test_no_log_still_continues(cli: Invoke, cfai_home: Path) -> None:
    whole(cli, "one")
    second = whole(cli, "-c", "--no-log", "two")
    assert second["usage"]["prompt_tokens"] > words("two")
    assert [r["prompt"] for r in rows(cfai_home)] == ["one"]


@pytest.mark.parametrize("broken", ["garbage", "directory"])
def test_a_broken_log_costs_a_warning_never_the_answer(cli: Invoke, cfai_home: Path, broken: str) -> None:
    if broken == "garbage":
        (cfai_home / "logs.db").write_bytes(b"this is not a database" * 100)
    else:
        (cfai_home / "logs.db").mkdir()
    result = cli("chat", "--offline", "hello")
    assert result.exit_code == 0 and result.stdout.endswith("You said: hello\n")
    assert "the exchange was not logged" in result.stderr
    assert cli("logs").exit_code == ExitCode.CONFIG


def test_a_locked_log_costs_a_warning_never_the_answer(cli: Invoke, cfai_home: Path) -> None:
    whole(cli, "first")
    holder = sqlite3.connect(cfai_home / "logs.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = cli("chat", "--offline", "second")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 0 and result.stdout.endswith("You said: second\n")
    assert "the exchange was not logged" in result.stderr and "locked" in result.stderr
    assert [r["prompt"] for r in rows(cfai_home)] == ["first"]


def test_attachments_are_named_and_large_images_not_kept(cli: Invoke, cfai_home: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(STDINS["png"] + bytes(8000))
    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk\n")
    result = cli("chat", "--offline", "-a", str(photo), "-a", str(notes), "what is this?")
    assert result.exit_code == 0, result.stderr
    [row] = rows(cfai_home)
    assert json.loads(row["attachments"]) == [{"name": "photo.png", "kind": "image"},
                                              {"name": "notes.txt", "kind": "text"}]
    [message] = json.loads(row["messages"])
    assert "base64" not in row["messages"] and "remember the milk" in row["messages"]
    assert message["content"][-1]["type"] == "text" and "image/png image of" in message["content"][-1]["text"]
    shown = cli("logs").stdout
    assert "attached: photo.png (image), notes.txt (text)" in shown
    again = whole(cli, "-c", "and now?")  # the placeholder goes as text: no image to send again
    assert again["model"] == "@cf/meta/llama-4-scout-17b-16e-instruct"  # the vision model the turn asked


def test_log_is_capped(cli: Invoke, cfai_home: Path) -> None:
    (cfai_home / "config.toml").write_text("log_max_rows = 2\n")
    for prompt in ("one", "two", "three"):
        cli("chat", "--offline", prompt)
    assert [r["prompt"] for r in rows(cfai_home)] == ["two", "three"]


def _session(stdin: str, *, responses: bool = False, conversation: Any = None) -> str:
    from cfai_cli.cli.interactive import chat_session
    from cfai_cli.cli.render import Terminal
    from cfai_cli.cli.respond import responses_session
    from cfai_cli.settings import load_settings

    settings = load_settings({"offline": True})
    out = io.StringIO()
    term = Terminal(stdout=out, stderr=io.StringIO(), stdin=io.StringIO(stdin), environ={})
    if responses:
        responses_session(settings, {"model": "gpt-4", "stream": False}, term, json_out=True,
                          conversation=conversation)
    else:
        template = {"model": "gpt-4", "stream": False, "messages": [{"role": "system", "content": "Be brief"}]}
        chat_session(settings, template, term, json_out=True, conversation=conversation)
    return out.getvalue()


@pytest.mark.parametrize("responses", [False, True])
def test_each_interactive_turn_is_logged_and_reset_starts_a_conversation(cfai_home: Path, responses: bool) -> None:
    _session("one\ntwo\n/reset\nthree\n/exit\n", responses=responses)
    logged = rows(cfai_home)
    assert [r["prompt"] for r in logged] == ["one", "two", "three"]
    assert logged[0]["cid"] == logged[1]["cid"] != logged[2]["cid"]
    assert {r["api"] for r in logged} == {"responses" if responses else "chat"}
    assert all(r["prompt_tokens"] and r["neurons"] for r in logged)  # each turn's own figures
    assert logged[1]["prompt_tokens"] > logged[0]["prompt_tokens"] == logged[2]["prompt_tokens"]
    if not responses:
        assert [r["system"] for r in logged] == ["Be brief", None, "Be brief"]


@pytest.mark.parametrize("responses", [False, True])
def test_an_interactive_session_continues_a_logged_conversation(cli: Invoke, cfai_home: Path,
                                                                responses: bool) -> None:
    from cfai_cli.cli.xlog import find_conversation
    from cfai_cli.settings import load_settings

    whole(cli, "-m", "gpt-4", "My name is Ada")
    conversation = find_conversation(load_settings({"offline": True}), None)
    _session("What is my name?\n/exit\n", responses=responses, conversation=conversation)
    first, second = rows(cfai_home)
    assert second["cid"] == first["cid"]
    system = 0 if responses else words("Be brief")
    assert second["prompt_tokens"] == (system + first["prompt_tokens"] + first["completion_tokens"]
                                       + words("What is my name?"))


def test_logs_shows_no_terminal_escapes_from_what_was_sent(cli: Invoke) -> None:
    cli("chat", "--offline", "-s", "sys\x1b]0;title\x07tem", "plain \x1b[31mred\x1b[0m text")
    shown = cli("logs").stdout
    assert "> plain red text" in shown and "system: system" in shown
    assert "\x1b" not in shown.split("You said")[0]
