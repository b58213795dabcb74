"""`cfai chat`: ask a model once (prompt, piped stdin, or a whole --request body) or chat interactively.

Imports typer and cli.common at the top; service, core, render and the interactive loop are imported inside
the command so `cfai --help` stays cheap. The request is always a validated OpenAI ChatCompletionRequest
(a CreateResponseRequest with --responses/--continue, see cli.respond), the same model the proxy uses, so
the CLI and the proxy cannot disagree about it. Every exchange is logged (cli.xlog, `cfai logs`) after its
answer is printed; `-c`/`--cid` continue a logged conversation through either API.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfai_cli.cli.common import (
    OfflineOption,
    TimeoutOption,
    UsageOption,
    complete_model,
    report_spend,
    start,
    validate_body,
)

if TYPE_CHECKING:
    from cfai_cli.cli.attach import Attachment
    from cfai_cli.cli.render import Terminal
    from cfai_cli.cli.xlog import Conversation
    from cfai_cli.settings import Settings

HELP = """Ask a Workers AI model; the answer streams to stdout.

The prompt is PROMPT, text piped on stdin, or both: `git diff | cfai chat "review this"` sends the prompt,
a blank line, then the piped text. Without a prompt on a terminal, cfai starts an interactive chat
(/help lists its commands, Ctrl-D leaves, Ctrl-C cancels the current answer; docs/interactive.md). Reasoning
goes dim to stderr, never to stdout.
"""

EPILOG = """Examples:

  cfai chat "Explain HTTP/3 in two sentences"

  cfai chat -a photo.jpg "what is this?"        (images, text files, audio; repeat -a)

  cfai chat -m gpt-4o-mini -s "Answer in French" "hello"

  git diff | cfai chat "review this"

  cfai chat --json --no-stream "hi" | jq .usage

  cfai chat --usage "hi"          # tokens, neurons and cost on stderr (docs/cost.md)

  jq -n '{model:"gpt-4o",messages:[{role:"user",content:"hi"}]}' | cfai chat --request - --json

  cfai chat "My name is Ada" && cfai chat -c "What is my name?"

  cfai logs -n 3 && cfai chat --cid 3f2a9c01b7de "and then?"   (continue an older conversation)
"""


def combine_prompt(prompt: str | None, piped: str | None) -> str | None:
    """The user's message: the prompt first, then a blank line, then the piped text (either may be absent)."""
    piped = piped.rstrip("\n") if piped and piped.strip() else None
    prompt = prompt if prompt and prompt.strip() else None
    if prompt and piped:
        return f"{prompt}\n\n{piped}"
    return prompt or piped


def build_body(*, base: dict[str, Any] | None, user_text: str | None, model: str | None, system: str | None,
               temperature: float | None, max_tokens: int | None, no_stream: bool, json_out: bool,
               default_model: str) -> dict[str, Any]:
    """The OpenAI request body: from flags, or a --request body with the given flags laid over it."""
    if base is None:
        body: dict[str, Any] = {"model": model or default_model, "messages": [], "stream": not no_stream}
        if body["stream"]:
            # Scripts reading NDJSON get usage in the last chunk; a terminal shows it on stderr.
            body["stream_options"] = {"include_usage": True}
    else:
        body = dict(base)
        body.setdefault("model", default_model)
        if model:
            body["model"] = model
        if no_stream:
            body["stream"] = False
        if body.get("stream") and not json_out and "stream_options" not in body:
            body["stream_options"] = {"include_usage": True}
    messages = body.get("messages")
    if isinstance(messages, list):  # anything else is left for validation to reject with its param
        messages = list(messages)
        if system is not None:
            first = messages[0] if messages else None
            if isinstance(first, dict) and first.get("role") in ("system", "developer"):
                messages[0] = {**first, "content": system}
            else:
                messages.insert(0, {"role": "system", "content": system})
        if user_text is not None:
            messages.append({"role": "user", "content": user_text})
        body["messages"] = messages
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
        body.pop("max_completion_tokens", None)  # it would win over max_tokens otherwise
    return body


def read_request(source: str, stdin: Any) -> dict[str, Any]:
    """A --request body from a file or stdin (`-`), decoded as a JSON object."""
    from cfai_cli.core.openai.base import parse_body
    from cfai_cli.errors import InvalidRequest

    if source == "-":
        raw: bytes | str = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
    else:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {source}: {exc.strerror or exc}", param_hint="--request") from None
    try:
        return parse_body(raw)
    except InvalidRequest as exc:
        raise InvalidRequest(f"--request {source}: {exc.message}", code=exc.code) from None


def chat(
    invocation: typer.Context,
    prompt: Annotated[str | None, typer.Argument(help="What to ask. Omit it to pipe text in or chat interactively.",
                                                 show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        "-m", "--model", autocompletion=complete_model,
        help="An OpenAI alias (gpt-4o-mini) or a Workers AI id (@cf/...) [env: CFAI_MODEL].",
        show_default=False)] = None,
    system: Annotated[str | None, typer.Option("-s", "--system", help="A system prompt.", show_default=False)] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0, max=2.0,
                                                      help="Sampling temperature, 0 to 2.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1,
                                                   help="Longest answer, in tokens.")] = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Wait for the whole answer.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the OpenAI chat.completion JSON; when streaming, one chat.completion.chunk per "
                       "line.")] = False,
    request: Annotated[str | None, typer.Option(
        "--request", metavar="FILE|-",
        help="Send a whole OpenAI chat request body from FILE or stdin (-); -m, -s, --temperature, "
             "--max-tokens, --no-stream and PROMPT override or extend it. Streams only if the body says "
             "\"stream\": true.", show_default=False)] = None,
    responses: Annotated[bool, typer.Option(
        "--responses", help="Go through the Responses API (as `POST /v1/responses` does) and store the answer; "
                            "--json then prints Response objects or events, and --request takes a Responses "
                            "body.")] = False,
    continue_: Annotated[bool, typer.Option(
        "-c", "--continue", help="Continue the most recent logged conversation, whichever API it used "
                                 "(its model too, unless -m is given).")] = False,
    conversation_id: Annotated[str | None, typer.Option(
        "--cid", metavar="ID", help="Continue the logged conversation with this id (`cfai logs` shows them).",
        show_default=False)] = None,
    no_log: Annotated[bool, typer.Option(
        "--no-log", help="Do not write this exchange to the local log (`cfai logs`) [config: log; env: "
                         "CFAI_LOG=0].")] = False,
    attach: Annotated[list[str] | None, typer.Option(
        "-a", "--attach", metavar="FILE|URL|-",
        help="Attach a file, an image URL or stdin (-), repeatable: images go to a vision model, text files "
             "are inlined under their name, audio is transcribed first.", show_default=False)] = None,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
    show_usage: UsageOption = False,
) -> None:

    from cfai_cli.cli.attach import piped_input, read_attachment
    from cfai_cli.cli.collector import importing
    from cfai_cli.cli.textin import stdin_bytes

    sources = attach or []
    if request == "-" and "-" in sources:
        raise typer.BadParameter("stdin can feed --request - or -a -, not both.", param_hint="--attach")
    if continue_ and conversation_id is not None:
        raise typer.BadParameter("-c continues the latest conversation, --cid ID a given one: use one of them.",
                                 param_hint="--cid")
    with importing():  # the settings' modules and models (cli/collector.py)
        term, settings = start(invocation.obj, offline=offline, timeout=timeout)
    conversation = None
    if continue_ or conversation_id is not None:
        from cfai_cli.cli.xlog import find_conversation, note_continued

        conversation = find_conversation(settings, conversation_id)
        note_continued(term, conversation)
    if no_log:
        settings = replace(settings, log=False)
    attachments = [read_attachment(source, term.stdin) for source in sources]
    piped = None
    if request != "-" and "-" not in sources and not term.in_tty:
        piped, from_stdin = piped_input(stdin_bytes(term.stdin), term)
        attachments += [from_stdin] if from_stdin else []
    user_text = combine_prompt(prompt, piped)
    if prompt is not None and user_text is None and not attachments and request is None:
        raise typer.BadParameter("nothing to ask: the prompt is empty.", param_hint="PROMPT")
    base = read_request(request, term.stdin) if request is not None else None
    chosen = model is not None or "model" in (base or {})
    if conversation is not None and not chosen:
        model = conversation.model  # the conversation keeps its model unless -m (or the body) says otherwise
    if responses:
        _responses(settings, term, base=base, user_text=user_text, model=model, system=system,
                   temperature=temperature, max_tokens=max_tokens, no_stream=no_stream, json_out=json_out,
                   from_file=request, conversation=conversation, attachments=attachments, chosen=chosen,
                   show_usage=show_usage)
        return
    body = build_body(base=base, user_text=user_text, model=model, system=system, temperature=temperature,
                      max_tokens=max_tokens, no_stream=no_stream, json_out=json_out,
                      default_model=settings.default_model)
    if base is None and user_text is None and not attachments:
        from cfai_cli.cli.interactive import chat_session

        check_session(settings, term, body["model"])
        chat_session(settings, body, term, json_out=json_out, conversation=conversation)
        return
    _once(settings, body, term, json_out=json_out, from_file=request, attachments=attachments,
          has_prompt=user_text is not None, chosen=chosen, show_usage=show_usage, conversation=conversation)


def _once(settings: Settings, body: dict[str, Any], term: Terminal, *, json_out: bool, from_file: str | None,
          attachments: list[Attachment], has_prompt: bool, chosen: bool, show_usage: bool = False,
          conversation: Conversation | None = None) -> None:
    from cfai_cli.cli.collector import importing

    with importing():  # the collector has nothing to free in what these build (cli/collector.py)
        import asyncio
        import copy
        import time

        from cfai_cli.cli.answer import ask
        from cfai_cli.cli.attach import add_to_chat_body, content_parts, vision_model
        from cfai_cli.cli.xlog import attachment_notes, chat_calls, log_exchange, new_cid, with_history
        from cfai_cli.core.openai.chat import ChatCompletionRequest
        from cfai_cli.service.context import offline_transport, open_context

        # --offline: the emulator and its in-process transport imported here too (open_context would make it
        # after this block, with the collector on: +8 M instructions in round 6, with httpx).
        transport = offline_transport() if settings.offline else None

        def validated(body: dict[str, Any]) -> ChatCompletionRequest:
            return validate_body(ChatCompletionRequest, with_history(body, conversation), from_file)

        # Checked before any attachment is fetched or transcribed (with a stand-in for what they will add).
        draft = copy.deepcopy(body)
        if attachments:
            add_to_chat_body(draft, ["(attachments)"], [], has_prompt=has_prompt)
        req = validated(draft)

    async def run() -> None:
        async with open_context(settings, transport=transport) as ctx:
            final = req
            if attachments:
                texts, images = await content_parts(ctx, attachments, term)
                add_to_chat_body(body, texts, images, has_prompt=has_prompt)
                if images:
                    body["model"] = vision_model(settings, str(body.get("model")), term, chosen=chosen)
                final = validated(body)
            started = time.time()
            reply = await ask(ctx, final, term, json_out=json_out)
            if show_usage:
                report_spend(ctx, term)
            log_exchange(settings, term, ctx, cid=conversation.cid if conversation else new_cid(), api="chat",
                         asked=str(final.model), added=body["messages"], answer=reply.content,
                         tool_calls=chat_calls(reply.tool_calls), started=started,
                         attachments=attachment_notes(attachments))

    asyncio.run(run())


def _responses(settings: Settings, term: Terminal, *, base: dict[str, Any] | None, user_text: str | None,
               model: str | None, system: str | None, temperature: float | None, max_tokens: int | None,
               no_stream: bool, json_out: bool, from_file: str | None, conversation: Conversation | None,
               attachments: list[Attachment], chosen: bool, show_usage: bool = False) -> None:
    import asyncio
    import time

    from cfai_cli.cli.attach import add_to_responses_body, content_parts, vision_model
    from cfai_cli.cli.respond import (
        build_request,
        build_responses_body,
        continued,
        log_response,
        respond,
        responses_session,
    )
    from cfai_cli.cli.xlog import attachment_notes, new_cid
    from cfai_cli.service.context import open_context

    body = build_responses_body(base=base, user_text=user_text, model=model, system=system, temperature=temperature,
                                max_tokens=max_tokens, no_stream=no_stream, previous=None,
                                default_model=settings.default_model)
    if base is None and user_text is None and not attachments:
        check_session(settings, term, body["model"])
        responses_session(settings, body, term, json_out=json_out, conversation=conversation)
        return
    # Checked before any attachment is fetched or transcribed (with a stand-in for what they will add).
    draft = dict(body)
    if attachments:
        add_to_responses_body(draft, ["(attachments)"], [])
    req = build_request(continued(settings, draft, conversation), from_file)

    async def run() -> None:
        async with open_context(settings) as ctx:
            final = req
            if attachments:
                texts, images = await content_parts(ctx, attachments, term)
                add_to_responses_body(body, texts, images)
                if images:
                    body["model"] = vision_model(settings, str(body.get("model")), term, chosen=chosen)
                final = build_request(continued(settings, body, conversation), from_file)
            started = time.time()
            response = await respond(ctx, final, term, json_out=json_out)
            if show_usage:
                report_spend(ctx, term)
            log_response(settings, term, ctx, cid=conversation.cid if conversation else new_cid(), body=body,
                         response=response, started=started, attachments=attachment_notes(attachments))

    asyncio.run(run())


def check_session(settings: Settings, term: Terminal, model: str) -> None:
    """Before an interactive session: a terminal to type in, a model name that exists (an alias, an id or a
    route) and credentials, so it fails before the first prompt, not after the user typed a question."""
    if not term.in_tty:
        raise typer.BadParameter("nothing to ask: give a PROMPT, pipe text on stdin, or use --request.",
                                 param_hint="PROMPT")
    settings.routing.resolve(model, settings.aliases)
    settings.require_credentials()


def register(app: typer.Typer) -> None:
    app.command("chat", help=HELP, epilog=EPILOG)(chat)
