"""The interactive chat: read a line, answer it, keep the conversation, until /exit or Ctrl-D.

One asyncio.Runner (one event loop, one upstream connection pool) lives for the whole session; input is
read synchronously between answers. During an answer the Runner turns Ctrl-C into cancelling that answer's
task and raises KeyboardInterrupt here, so only the answer ends, never the session. Imports service, core,
errors and cli.render/cli.answer; only imported when `cfai chat` runs without a prompt on a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from typing import Any

from cfai_cli.cli.answer import Reply, ask
from cfai_cli.cli.render import Terminal
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.errors import CfaiError
from cfai_cli.service.context import open_context
from cfai_cli.settings import Settings

Message = dict[str, Any]
Answer = Callable[[list[Message]], Coroutine[Any, Any, Reply]]

HELP = "/exit or Ctrl-D leaves, Ctrl-C cancels an answer, /reset forgets the conversation, /help shows this."


def run_session(*, read: Callable[[], str], answer: Answer, runner: asyncio.Runner, term: Terminal) -> list[Message]:
    """The loop itself, with input and answering passed in; returns the conversation kept."""
    history: list[Message] = []
    while True:
        try:
            line = read()
        except EOFError:
            term.end_err_line()
            break
        except KeyboardInterrupt:
            # Ctrl-C at the prompt only clears the line, like a shell; leaving is /exit or Ctrl-D.
            term.end_err_line()
            term.note("(/exit or Ctrl-D to leave)")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history.clear()
            term.note("(conversation forgotten)")
            continue
        if text == "/help":
            term.note(HELP)
            continue
        turn = [*history, {"role": "user", "content": line}]
        try:
            reply = runner.run(answer(turn))
        except KeyboardInterrupt:
            # The question and the partial answer are dropped: the next turn starts from the last full one.
            term.note("(cancelled)")
            continue
        except CfaiError as err:
            # One failed answer (rate limit, timeout) should not end the conversation.
            term.error(err.message)
            continue
        history = [*turn, {"role": "assistant", "content": reply.content}]
    return history


def chat_session(settings: Settings, template: Mapping[str, Any], term: Terminal, *, json_out: bool) -> None:
    """Run an interactive chat; `template` is the request body every turn starts from (model, system...)."""
    with contextlib.suppress(ImportError):  # not on Windows; input() then works without line editing
        import readline  # noqa: F401  (imported for its side effect: line editing and history in input())

    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        # Entered once on the Runner's loop and reused by every turn: keep-alive connections survive.
        ctx = runner.run(stack.enter_async_context(open_context(settings)))
        try:
            async def answer(messages: list[Message]) -> Reply:
                body = {**template, "messages": [*template.get("messages", []), *messages]}
                req = validate_request(ChatCompletionRequest, body)
                return await ask(ctx, req, term, json_out=json_out)

            term.note(f"Chatting with {template['model']}. {HELP}")
            run_session(read=lambda: term.prompt("› "), answer=answer, runner=runner, term=term)
        finally:
            runner.run(stack.aclose())
