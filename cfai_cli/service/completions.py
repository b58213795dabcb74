"""Legacy completions for the proxy: each prompt answered on the chat path, reshaped as `text_completion`.

Imports core, errors and service.chat. Several prompts run concurrently; their choices are numbered
prompt by prompt (`index = prompt_number * n + choice`), as OpenAI numbers them. Streams of several
prompts are opened together (so early failures are plain HTTP errors) and relayed one after the other.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from cfai_cli.core.caps import check_stream_share
from cfai_cli.core.openai.chat import Usage
from cfai_cli.core.openai.completions import CompletionRequest, TextCompletion
from cfai_cli.core.translate.completions import (
    add_usage,
    choices_from_chat,
    chunk_choices,
    prompts,
    text_completion,
    to_chat_request,
)
from cfai_cli.service.chat import create_chat_completion, open_chat_stream
from cfai_cli.service.chat_stream import ChatStream, EventStream
from cfai_cli.service.context import Context
from cfai_cli.service.gather import gather_all, open_all


async def create_completion(ctx: Context, req: CompletionRequest) -> TextCompletion:
    texts = prompts(req)
    n = req.n or 1
    ctx.router.authorize(req.model, ctx.record)  # before charging: a refused request uses no rate window
    await ctx.record.reserve(len(texts) * n)
    chats = await gather_all(create_chat_completion(ctx, to_chat_request(req, p, stream=False)) for p in texts)
    choices = [choice for i, (prompt, chat) in enumerate(zip(texts, chats, strict=True))
               for choice in choices_from_chat(chat, prompt, echo=bool(req.echo), base=i * n)]
    out = text_completion(choices, completion_id=ctx.ids("cmpl"), created=ctx.now(), model=chats[0]["model"])
    usage: Usage | None = None
    for chat in chats:
        usage = add_usage(usage, chat["usage"])
    assert usage is not None
    out["usage"] = usage
    return out


async def open_completion_stream(ctx: Context, req: CompletionRequest) -> EventStream[TextCompletion]:
    """Open every prompt's upstream stream, then return the `text_completion` chunk stream."""
    texts = prompts(req)
    model_id = ctx.router.resolve(req.model)
    check_stream_share(len(texts) * (req.n or 1), ctx.settings.max_connections)
    ctx.router.authorize(req.model, ctx.record)
    await ctx.record.reserve(len(texts) * (req.n or 1))
    streams = await open_all(open_chat_stream(ctx, to_chat_request(req, p, stream=True)) for p in texts)
    return EventStream(_stream(req, texts, streams, completion_id=ctx.ids("cmpl"), created=ctx.now(),
                               model_id=model_id), owns=streams)


async def _stream(req: CompletionRequest, texts: Sequence[str], streams: Sequence[ChatStream], *,
                  completion_id: str, created: int, model_id: str) -> AsyncGenerator[list[TextCompletion], None]:
    n = req.n or 1
    usage: Usage | None = None
    try:
        for i, (prompt, stream) in enumerate(zip(texts, streams, strict=True)):
            started: set[int] = set()
            async for batch in stream.batches():
                out: list[TextCompletion] = []
                for chunk in batch:
                    if chunk.get("usage"):
                        chunk_usage = chunk["usage"]
                        assert chunk_usage is not None
                        usage = add_usage(usage, chunk_usage)
                    choices = chunk_choices(chunk, prompt, echo=bool(req.echo), base=i * n, started=started)
                    if choices:
                        out.append(text_completion(choices, completion_id=completion_id, created=created,
                                                   model=model_id))
                yield out
    finally:
        for stream in streams:
            await stream.aclose()
    if req.stream_options and req.stream_options.include_usage and usage is not None:
        last = text_completion([], completion_id=completion_id, created=created, model=model_id)
        last["usage"] = usage
        yield [last]
