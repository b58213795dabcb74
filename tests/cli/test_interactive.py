"""The interactive chat loop: history kept, /reset, Ctrl-C cancels one answer, errors do not end it."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from cfai_cli.cli.answer import Reply
from cfai_cli.cli.interactive import chat_session, run_session
from cfai_cli.cli.render import Terminal
from cfai_cli.errors import RateLimited
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


def terminal() -> tuple[Terminal, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Terminal(stdout=out, stderr=err, stdin=io.StringIO(), environ={}), out, err


def test_history_is_kept_and_reset(cfai_home: Any) -> None:
    seen: list[list[dict[str, Any]]] = []

    async def answer(messages: list[dict[str, Any]]) -> Reply:
        seen.append(messages)
        return Reply(content=f"answer {len(seen)}")

    term, _, err = terminal()
    with asyncio.Runner() as runner:
        history = run_session(read=Script("one", "", "two", "/reset", "three", "/help", "/exit", "never"),
                              answer=answer, runner=runner, term=term)
    assert [len(m) for m in seen] == [1, 3, 1]
    assert seen[1] == [{"role": "user", "content": "one"}, {"role": "assistant", "content": "answer 1"},
                       {"role": "user", "content": "two"}]
    assert history == [{"role": "user", "content": "three"}, {"role": "assistant", "content": "answer 3"}]
    assert "forgotten" in err.getvalue() and "/exit" in err.getvalue()


def test_ctrl_c_cancels_the_answer_and_drops_the_turn() -> None:
    calls: list[list[dict[str, Any]]] = []

    async def answer(messages: list[dict[str, Any]]) -> Reply:
        calls.append(messages)
        if messages[-1]["content"] == "slow":
            raise KeyboardInterrupt  # what asyncio.Runner raises after cancelling the task on Ctrl-C
        return Reply(content="ok")

    term, _, err = terminal()
    with asyncio.Runner() as runner:
        history = run_session(read=Script("slow", "fast"), answer=answer, runner=runner, term=term)
    assert "(cancelled)" in err.getvalue()
    assert calls[1] == [{"role": "user", "content": "fast"}]
    assert history == [{"role": "user", "content": "fast"}, {"role": "assistant", "content": "ok"}]


def test_ctrl_c_at_the_prompt_and_errors_keep_the_session() -> None:
    async def answer(messages: list[dict[str, Any]]) -> Reply:
        if messages[-1]["content"] == "busy":
            raise RateLimited("Workers AI error 3040: Capacity temporarily exceeded")
        return Reply(content="fine")

    term, _, err = terminal()
    with asyncio.Runner() as runner:
        history = run_session(read=Script("^C", "busy", "again"), answer=answer, runner=runner, term=term)
    assert "cfai: Workers AI error 3040" in err.getvalue()
    assert history == [{"role": "user", "content": "again"}, {"role": "assistant", "content": "fine"}]


@pytest.mark.parametrize("stream", [True, False])
def test_a_whole_session_against_the_emulator(stream: bool) -> None:
    settings = load_settings({"offline": True})
    out, err = io.StringIO(), io.StringIO()
    term = Terminal(stdout=out, stderr=err, stdin=io.StringIO("first question\nsecond question\n/exit\n"),
                    environ={})
    template: dict[str, Any] = {"model": "gpt-4o-mini", "stream": stream,
                                "messages": [{"role": "system", "content": "be brief"}]}
    if stream:
        template["stream_options"] = {"include_usage": True}
    chat_session(settings, template, term, json_out=True)
    decoder, text, docs = json.JSONDecoder(), out.getvalue(), []
    while text.strip():
        doc, end = decoder.raw_decode(text.lstrip())
        docs.append(doc)
        text = text.lstrip()[end:]
    usages = [d["usage"] for d in docs if d.get("usage")]
    # The second turn sends the first question and answer again: more prompt tokens.
    assert len(usages) == 2 and usages[1]["prompt_tokens"] > usages[0]["prompt_tokens"] + 10
    assert "Chatting with gpt-4o-mini" in err.getvalue()
