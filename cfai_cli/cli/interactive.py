"""The interactive chat: read an entry, answer it or run its slash command, keep the conversation, until /exit
or Ctrl-D. One loop for chat completions and for the Responses API (cli.respond's backend).

One asyncio.Runner (one event loop, one upstream connection pool) lives for the whole session; the line
editor (cli.lineedit, prompt_toolkit) prompts on it too. During an answer the Runner turns Ctrl-C into
cancelling that answer's task and raises KeyboardInterrupt here, so only the answer ends, never the session.
Imports service, core, errors and cli.render/answer/attach/session; only imported when `cfai chat` runs
without a prompt on a terminal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

from cfai_cli.cli.answer import ask
from cfai_cli.cli.attach import content_parts, read_attachment, user_content, vision_model
from cfai_cli.cli.render import Terminal
from cfai_cli.cli.session import EXIT, Backend, Message, Session, Spend, Turn, TurnResult, fenced_lines
from cfai_cli.cli.xlog import Conversation, attachment_notes, chat_calls, log_exchange, new_cid, with_history
from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.errors import CfaiError
from cfai_cli.service.context import Context, open_context
from cfai_cli.service.cost import settle
from cfai_cli.service.record import RequestRecord
from cfai_cli.settings import Settings

HELP = "/help lists the commands, /exit or Ctrl-D leaves, Ctrl-C cancels an answer."


def run_session(session: Session, *, read: Callable[[], str], backend: Backend, runner: asyncio.Runner,
                term: Terminal, hush: Callable[[], AbstractContextManager[None]] = nullcontext) -> list[Message]:
    """The loop itself, with input and answering passed in; returns the conversation kept. `hush` is held
    while an answer runs (the line editor's: no terminal echo)."""
    while True:
        try:
            entry = read()
        except EOFError:
            term.end_err_line()
            break
        except KeyboardInterrupt:
            # Ctrl-C at the prompt only clears the line, like a shell; leaving is /exit or Ctrl-D.
            term.note("(/exit or Ctrl-D to leave)")
            continue
        text = session.handle(entry)
        if text is EXIT:
            break
        if not isinstance(text, str):
            continue
        try:
            with hush():
                result = runner.run(backend.answer(session.turn(text)))
        except KeyboardInterrupt:
            # The message and the partial answer are dropped (the partial answer stays on screen, once):
            # the next turn starts from the last full one, with the same pending attachments.
            term.note("(cancelled)")
            continue
        except CfaiError as err:
            # One failed answer (rate limit, timeout) should not end the conversation.
            term.error(err.message)
            if err.param == "attachment" and session.attachments:
                session.attachments.clear()
                term.note("(attachments dropped: /attach again)")
            continue
        session.finish(result)
    return session.history


def spend_of(record: RequestRecord, ctx: Context) -> Spend:
    settle(record, ctx.cache)
    return Spend(record.prompt_tokens, record.completion_tokens, record.neurons, record.neurons_estimated)


@dataclass
class Thread:
    """The logged conversation a session continues (-c, --cid) and the id its turns are logged under (cli.xlog);
    /clear (a new epoch) starts a new conversation. The system prompt is logged when it changes."""

    conversation: Conversation | None
    cid: str
    epoch: int = 0
    logged_system: str | None = None

    @classmethod
    def of(cls, conversation: Conversation | None) -> Thread:
        if conversation is None:
            return cls(None, new_cid())
        return cls(conversation, conversation.cid, logged_system=conversation.system)

    def follow(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.conversation, self.cid, self.epoch, self.logged_system = None, new_cid(), epoch, None


class ChatBackend:
    """Each turn is one chat completion carrying the whole conversation (`template` gives the other fields),
    after the history of the logged conversation `thread` continues; every answered turn is logged."""

    def __init__(self, ctx: Context, template: Mapping[str, Any], term: Terminal, *, json_out: bool,
                 thread: Thread) -> None:
        self.ctx, self.template, self.term, self.json_out, self.thread = ctx, template, term, json_out, thread

    async def answer(self, turn: Turn) -> TurnResult:
        self.thread.follow(turn.epoch)
        ctx = self.ctx.for_request(RequestRecord())  # its own record: /usage adds up the turns, the log each one
        texts, images = await content_parts(ctx, turn.attachments, self.term) if turn.attachments else ([], [])
        model = turn.model
        if images:
            model = vision_model(ctx.settings, model, self.term, chosen=turn.chosen)
        user: Message = {"role": "user", "content": user_content(turn.text, texts, images)}
        system = [{"role": "system", "content": turn.system}] if turn.system else []
        body = {**self.template, "model": model, "messages": [*system, *turn.history, user]}
        req = validate_request(ChatCompletionRequest, with_history(body, self.thread.conversation))
        started = time.time()
        reply = await ask(ctx, req, self.term, json_out=self.json_out)
        changed = system if turn.system != self.thread.logged_system else []
        log_exchange(ctx.settings, self.term, ctx, cid=self.thread.cid, api="chat", asked=str(req.model),
                     added=[*changed, user], answer=reply.content, tool_calls=chat_calls(reply.tool_calls),
                     started=started, attachments=attachment_notes(turn.attachments))
        self.thread.logged_system = turn.system
        return TurnResult(user=user, reply=reply, model=model, spend=spend_of(ctx.record, ctx))


def model_names(settings: Settings) -> Callable[[], list[str]]:
    """What Tab offers after /model: aliases, routes, and the ids the last `cfai models` saw (no network)."""
    def names() -> list[str]:
        import json

        from cfai_cli.cli.common import MODELS_CACHE

        found = {*settings.aliases, *settings.routing.routes}
        try:
            cached = json.loads((settings.data_dir / MODELS_CACHE).read_text(encoding="utf-8"))
            found.update(n for n in cached if isinstance(n, str))
        except (OSError, ValueError, TypeError):
            pass
        return sorted(found)

    return names


def run_interactive(settings: Settings, template: Mapping[str, Any], term: Terminal, *,
                    backend: Callable[[Context], Backend], system: str | None, banner: str) -> list[Message]:
    """Open the context, make the backend and the reader (the line editor on a terminal, plain lines
    otherwise), and run the loop."""
    session = Session(model=str(template["model"]), term=term, system=system,
                      resolve=lambda name: settings.routing.resolve(name, settings.aliases),
                      attach=lambda source: read_attachment(source, term.stdin))
    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        # Entered once on the Runner's loop and reused by every turn: keep-alive connections survive.
        ctx = runner.run(stack.enter_async_context(open_context(settings)))
        try:
            hush: Callable[[], AbstractContextManager[None]] = nullcontext
            if term.in_tty and term.out_tty:
                from cfai_cli.cli.lineedit import HISTORY_FILE, no_echo, reader

                read = reader(runner, settings.data_dir / HISTORY_FILE, model_names(settings),
                              color=not term.no_color, warn=term.warn)
                hush = partial(no_echo, term.stdin.fileno())
            else:
                read = fenced_lines(lambda: term.prompt("› "))
            term.note(f"{banner} {HELP}")
            return run_session(session, read=read, backend=backend(ctx), runner=runner, term=term, hush=hush)
        finally:
            runner.run(stack.aclose())


def split_system(template: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The template without its leading system message (-s), and that message's text: /system owns it."""
    messages = list(template.get("messages") or [])
    first = messages[0] if messages else None
    system = None
    if isinstance(first, dict) and first.get("role") in ("system", "developer") and isinstance(first.get("content"),
                                                                                               str):
        system, messages = first["content"], messages[1:]
    return {**template, "messages": messages}, system


def chat_session(settings: Settings, template: Mapping[str, Any], term: Terminal, *, json_out: bool,
                 conversation: Conversation | None = None) -> None:
    """Run an interactive chat; `template` is the request body every turn starts from (model, system...),
    after the history of `conversation` if one is continued (-c, --cid; until /clear)."""
    rest, system = split_system(template)
    if system is None and conversation is not None:
        system = conversation.system  # /system shows and replaces what the conversation had
    base = {k: v for k, v in rest.items() if k != "messages"}
    thread = Thread.of(conversation)
    run_interactive(settings, rest, term, system=system, banner=f"Chatting with {template['model']}.",
                    backend=lambda ctx: ChatBackend(ctx, base, term, json_out=json_out, thread=thread))
