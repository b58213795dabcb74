"""The interactive chat: read a line, answer it, keep the conversation, until /exit or Ctrl-D.

One asyncio.Runner (one event loop, one upstream connection pool) lives for the whole session; input is
read synchronously between answers. During an answer the Runner turns Ctrl-C into cancelling that answer's
task and raises KeyboardInterrupt here, so only the answer ends, never the session. Imports service, core,
errors and cli.render/cli.answer; only imported when `cfai chat` runs without a prompt on a terminal. Each
answered turn is logged by cli.xlog's `log_exchange` (a /reset starts a new conversation id).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from typing import Any

from cfai_cli.cli.answer import Reply, ask
from cfai_cli.cli.render import Terminal
from cfai_cli.cli.xlog import Conversation, chat_calls, log_exchange, new_cid, with_history
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.errors import CfaiError
from cfai_cli.service.context import open_context
from cfai_cli.service.record import RequestRecord
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


def chat_session(settings: Settings, template: Mapping[str, Any], term: Terminal, *, json_out: bool,
                 conversation: Conversation | None = None) -> None:
    """Run an interactive chat; `template` is the request body every turn starts from (model, system...),
    after the history of `conversation` if one is continued (until /reset)."""
    with contextlib.suppress(ImportError):  # not on Windows; input() then works without line editing
        import readline  # noqa: F401  (imported for its side effect: line editing and history in input())

    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        # Entered once on the Runner's loop and reused by every turn: keep-alive connections survive.
        ctx = runner.run(stack.enter_async_context(open_context(settings)))
        state: dict[str, Any] = {"conversation": conversation, "turns": 0,
                                 "cid": conversation.cid if conversation else new_cid()}
        try:
            async def answer(messages: list[Message]) -> Reply:
                if len(messages) == 1 and state["turns"]:  # /reset: a new conversation
                    state.update(conversation=None, cid=new_cid(), turns=0)
                own = [*template.get("messages", []), *messages]
                body = with_history({**template, "messages": own}, state["conversation"])
                req = validate_request(ChatCompletionRequest, body)
                turn = ctx.for_request(RequestRecord())  # this turn's tokens and neurons, for the log
                started = time.time()
                reply = await ask(turn, req, term, json_out=json_out)
                # The template's system prompt is logged with the conversation's first turn only.
                added = [*(template.get("messages", []) if not state["turns"] else []), messages[-1]]
                log_exchange(settings, term, turn, cid=state["cid"], api="chat", asked=str(req.model), added=added,
                             answer=reply.content, tool_calls=chat_calls(reply.tool_calls), started=started)
                state["turns"] += 1
                return reply

            term.note(f"Chatting with {template['model']}. {HELP}")
            run_session(read=lambda: term.prompt("› "), answer=answer, runner=runner, term=term)
        finally:
            runner.run(stack.aclose())
