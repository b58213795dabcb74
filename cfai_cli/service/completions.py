"""Legacy completions for the proxy: each prompt answered on the chat path, reshaped as `text_completion`.

Imports core, errors and service.chat. Several prompts run concurrently; their choices are numbered
prompt by prompt (`index = prompt_number * n + choice`), as OpenAI numbers them. Streams of several
prompts are opened together (so early failures are plain HTTP errors) and relayed one after the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from cfai_cli.core.caps import check_stream_share
from cfai_cli.core.openai.chat import ChatCompletionChunk, Usage
from cfai_cli.core.openai.completions import CompletionRequest, TextCompletion
from cfai_cli.core.translate.completions import (
    choices_from_chat,
    chunk_choices,
    prompts,
    text_completion,
    to_chat_request,
)
from cfai_cli.service.chat import create_chat_completion, open_chat_stream
from cfai_cli.service.context import Context
from cfai_cli.service.gather import gather_all


def _add(total: Usage | None, usage: Usage) -> Usage:
    if total is None:
        return {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"]}
    return {"prompt_tokens": total["prompt_tokens"] + usage["prompt_tokens"],
            "completion_tokens": total["completion_tokens"] + usage["completion_tokens"],
            "total_tokens": total["total_tokens"] + usage["total_tokens"]}


async def create_completion(ctx: Context, req: CompletionRequest) -> TextCompletion:
    texts = prompts(req)
    n = req.n or 1
    await ctx.record.reserve(len(texts) * n)
    chats = await gather_all(create_chat_completion(ctx, to_chat_request(req, p, stream=False)) for p in texts)
    choices = [choice for i, (prompt, chat) in enumerate(zip(texts, chats, strict=True))
               for choice in choices_from_chat(chat, prompt, echo=bool(req.echo), base=i * n)]
    out = text_completion(choices, completion_id=ctx.ids("cmpl"), created=ctx.now(), model=chats[0]["model"])
    usage: Usage | None = None
    for chat in chats:
        usage = _add(usage, chat["usage"])
    assert usage is not None
    out["usage"] = usage
    return out


async def open_completion_stream(ctx: Context, req: CompletionRequest) -> AsyncIterator[TextCompletion]:
    """Open every prompt's upstream stream, then return the `text_completion` chunk iterator."""
    texts = prompts(req)
    model_id = ctx.router.resolve(req.model)
    check_stream_share(len(texts) * (req.n or 1), ctx.settings.max_connections)
    await ctx.record.reserve(len(texts) * (req.n or 1))
    streams = await gather_all(open_chat_stream(ctx, to_chat_request(req, p, stream=True)) for p in texts)
    return _stream(ctx, req, texts, streams, model_id)


async def _stream(ctx: Context, req: CompletionRequest, texts: Sequence[str],
                  streams: Sequence[AsyncIterator[ChatCompletionChunk]], model_id: str
                  ) -> AsyncIterator[TextCompletion]:
    completion_id, created, n = ctx.ids("cmpl"), ctx.now(), req.n or 1
    usage: Usage | None = None
    try:
        for i, (prompt, stream) in enumerate(zip(texts, streams, strict=True)):
            started: set[int] = set()
            async for chunk in stream:
                if chunk.get("usage"):
                    chunk_usage = chunk["usage"]
                    assert chunk_usage is not None
                    usage = _add(usage, chunk_usage)
                choices = chunk_choices(chunk, prompt, echo=bool(req.echo), base=i * n, started=started)
                if choices:
                    yield text_completion(choices, completion_id=completion_id, created=created, model=model_id)
    finally:
        for stream in streams:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
    if req.stream_options and req.stream_options.include_usage and usage is not None:
        last = text_completion([], completion_id=completion_id, created=created, model=model_id)
        last["usage"] = usage
        yield last
