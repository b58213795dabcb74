"""The interactive chat loop: history kept, /clear, Ctrl-C cancels one answer, errors do not end it; whole
sessions against the emulator through the real backends."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.cli.answer import Reply
from cfai_cli.cli.attach import read_attachment
from cfai_cli.cli.interactive import chat_session, run_session
from cfai_cli.cli.render import AnswerPrinter, Terminal
from cfai_cli.cli.respond import responses_session
from cfai_cli.cli.session import Session, Spend, Turn, TurnResult, fenced_lines
from cfai_cli.errors import InvalidRequest, RateLimited
from cfai_cli.settings import load_settings


class Script:
    """Lines typed by the user; EOFError (Ctrl-D) after the last one."""

    def __init__(self, *lines: str) -> None:
        self._lines: Iterator[str] = iter(lines)

    def __call__(self) -> str:
        try:
            line = next(self._lines)
        except StopIteration:
            raise EOFError from None
        if line == "^C":
            raise KeyboardInterrupt
        return line


class Backend:
    """Answers "answer N"; what each turn asked is kept in `turns`."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.turns: list[Turn] = []
        self.fail = fail or {}

    async def answer(self, turn: Turn) -> TurnResult:
        self.turns.append(turn)
        if turn.text in self.fail:
            raise self.fail[turn.text]
        return TurnResult(user={"role": "user", "content": turn.text},
                          reply=Reply(content=f"answer {len(self.turns)}"), model=turn.model, spend=Spend(1, 2))


def terminal(stdin: str = "") -> tuple[Terminal, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Terminal(stdout=out, stderr=err, stdin=io.StringIO(stdin), environ={}), out, err


def new_session(term: Terminal) -> Session:
    return Session(model="m", term=term, resolve=lambda name: name,
                   attach=lambda source: read_attachment(source, io.StringIO()))


def test_history_is_kept_and_cleared() -> None:
    backend = Backend()
    term, _, err = terminal()
    session = new_session(term)
    with asyncio.Runner() as runner:
        history = run_session(session, read=fenced_lines(Script("one", "", "two", "/clear", "three", "/help",
                                                                "/exit", "never")),
                              backend=backend, runner=runner, term=term)
    assert [len(t.history) for t in backend.turns] == [0, 2, 0]
    assert backend.turns[1].history == [{"role": "user", "content": "one"},
                                        {"role": "assistant", "content": "answer 1"}]
    assert history == [{"role": "user", "content": "three"}, {"role": "assistant", "content": "answer 3"}]
    assert "forgotten" in err.getvalue() and "/exit" in err.getvalue()
    assert session.spend.prompt_tokens == 3


def test_a_triple_quoted_block_and_an_unknown_command() -> None:
    backend = Backend()
    term, _, err = terminal()
    with asyncio.Runner() as runner:
        run_session(new_session(term), read=fenced_lines(Script('"""', "first line", "/not a command", '"""',
                                                                "/nope")),
                    backend=backend, runner=runner, term=term)
    assert [t.text for t in backend.turns] == ["first line\n/not a command"]
    assert "unknown command /nope" in err.getvalue()


def test_ctrl_c_cancels_the_answer_and_drops_the_turn(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("kept")
    backend = Backend(fail={"slow": KeyboardInterrupt()})  # what asyncio.Runner raises after cancelling on Ctrl-C
    term, _, err = terminal()
    session = new_session(term)
    with asyncio.Runner() as runner:
        history = run_session(session, read=Script(f"/attach {tmp_path / 'a.txt'}", "slow", "fast"),
                              backend=backend, runner=runner, term=term)
    assert "(cancelled)" in err.getvalue()
    assert backend.turns[1].history == []
    assert [a.name for a in backend.turns[1].attachments] == ["a.txt"]  # not sent, so still pending
    assert history == [{"role": "user", "content": "fast"}, {"role": "assistant", "content": "answer 2"}]
    assert session.turns == 1


def test_ctrl_c_at_the_prompt_and_errors_keep_the_session(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    backend = Backend(fail={"busy": RateLimited("Workers AI error 3040: Capacity temporarily exceeded"),
                            "bad url": InvalidRequest("-a https://x is not an image", param="attachment")})
    term, _, err = terminal()
    session = new_session(term)
    with asyncio.Runner() as runner:
        history = run_session(session, read=Script("^C", f"/attach {tmp_path / 'a.txt'}", "busy", "bad url",
                                                   "again"),
                              backend=backend, runner=runner, term=term)
    assert "(/exit or Ctrl-D to leave)" in err.getvalue()
    assert "cfai: Workers AI error 3040" in err.getvalue()
    # A rate limit keeps the attachment for the retry; an attachment that failed is dropped.
    assert [len(t.attachments) for t in backend.turns] == [1, 1, 0]
    assert "attachments dropped" in err.getvalue()
    assert history == [{"role": "user", "content": "again"}, {"role": "assistant", "content": "answer 3"}]


def test_a_real_sigint_mid_stream_leaves_the_partial_answer_once() -> None:
    """The Runner's own Ctrl-C handling: SIGINT cancels the answer's task, the printer closes once."""
    term, out, err = terminal()

    class Streaming:
        async def answer(self, turn: Turn) -> TurnResult:
            printer = AnswerPrinter(term)
            try:
                for i in range(1000):
                    printer.text(f"word{i} ")
                    if i == 5:
                        signal.raise_signal(signal.SIGINT)
                    await asyncio.sleep(0.01)
            finally:
                printer.close()
            raise AssertionError("not cancelled")

    with asyncio.Runner() as runner:
        history = run_session(new_session(term), read=Script("go"), backend=Streaming(), runner=runner, term=term)
    assert history == []
    assert out.getvalue().count("word0 ") == 1 and "word5" in out.getvalue() and "word9 " not in out.getvalue()
    assert out.getvalue().endswith("\n")
    assert "(cancelled)" in err.getvalue()


def ndjson(text: str) -> list[dict[str, Any]]:
    decoder, docs = json.JSONDecoder(), []
    while text.strip():
        doc, end = decoder.raw_decode(text.lstrip())
        docs.append(doc)
        text = text.lstrip()[end:]
    return docs


@pytest.mark.parametrize("stream", [True, False])
def test_a_whole_session_against_the_emulator(stream: bool, cfai_home: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the word is kumquat")
    settings = load_settings({"offline": True})
    script = (f"first question\n/system Answer in French.\n/attach {tmp_path / 'notes.txt'}\nsecond question\n"
              f"/model no such model!\n/model gpt-4o\n\"\"\"\nthird\nquestion\n\"\"\"\n/usage\n"
              f"/save {tmp_path / 'chat.json'}\n/exit\n")
    term, out, err = terminal(script)
    template: dict[str, Any] = {"model": "gpt-4o-mini", "stream": stream,
                                "messages": [{"role": "system", "content": "be brief"}]}
    if stream:
        template["stream_options"] = {"include_usage": True}
    chat_session(settings, template, term, json_out=True)
    docs = [d for d in ndjson(out.getvalue()) if d.get("usage")]
    usages = [d["usage"] for d in docs]
    assert len(usages) == 3
    # Each turn sends the conversation again: more prompt tokens every time.
    assert usages[1]["prompt_tokens"] > usages[0]["prompt_tokens"] + 10
    assert usages[2]["prompt_tokens"] > usages[1]["prompt_tokens"] + 10
    assert docs[2]["model"] != docs[0]["model"]  # /model gpt-4o took effect
    assert "Chatting with gpt-4o-mini" in err.getvalue() and "The model stays gpt-4o-mini" in err.getvalue()
    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    assert re.search(rf"usage: {prompt} prompt \+ {completion} completion tokens · [\d.]+ neurons", err.getvalue())
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert saved["model"] == "gpt-4o"
    roles = [m["role"] for m in saved["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert saved["messages"][0]["content"] == "Answer in French."
    assert "kumquat" in saved["messages"][3]["content"] and "notes.txt" in saved["messages"][3]["content"]
    assert saved["messages"][5]["content"] == "third\nquestion"


def test_the_responses_session_chains_turns_and_clear_starts_over(cfai_home: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the word is kumquat")
    settings = load_settings({"offline": True})
    term, out, err = terminal(f"one\n/system Be terse.\n/attach {tmp_path / 'notes.txt'}\ntwo\n/clear\nthree\n"
                              "/usage\n/exit\n")
    responses_session(settings, {"model": "gpt-4o-mini", "stream": False}, term, json_out=True)
    docs = ndjson(out.getvalue())
    assert [d["previous_response_id"] for d in docs] == [None, docs[0]["id"], None]
    assert [d["instructions"] for d in docs] == [None, "Be terse.", "Be terse."]
    assert "kumquat" in docs[1]["output_text"]
    assert "over the Responses API" in err.getvalue()
    prompt = sum(d["usage"]["input_tokens"] for d in docs)
    assert f"usage: {prompt} prompt" in err.getvalue()
