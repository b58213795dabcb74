"""A Workers AI stream's answer (service.workers_stream): the tokens and neurons it used reach the request's record
however it ends (read to the end, or closed when the client hung up), and the usage chunk comes last only for a
stream read to its end whose client asked for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.translate.chat import to_workers_chat
from cfai_cli.service.record import RequestRecord
from cfai_cli.service.workers_stream import workers_stream
from cfai_cli.upstream.workers_answers import UpstreamStream

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.1-8b-instruct-fast"
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "neurons": 1.5}


class Reads:
    """An upstream answer's reads, one at a time; closed when the answer is."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            yield read

    async def aclose(self) -> None:
        self.closed = True


def event(data: dict[str, Any]) -> bytes:
    import json

    return b"data: " + json.dumps(data).encode() + b"\n\n"


READS = [event({"response": "Hello", "p": "x"}), event({"response": " there", "p": "x"}),
         event({"response": "", "usage": USAGE}) + b"data: [DONE]\n\n"]


async def answer(reads: Reads, *, include_usage: bool) -> tuple[Any, RequestRecord]:
    record = RequestRecord()
    ctx: Any = SimpleNamespace(record=record, ids=lambda prefix: f"{prefix}-1", now=lambda: 1)
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    req = validate_request(ChatCompletionRequest, body)
    call = to_workers_chat(req, MODEL, default_max_tokens=256, stream=True)
    upstream = UpstreamStream(chunks=reads.chunks(), _response=reads)
    client: Any = None
    return await workers_stream(ctx, req, call, [upstream], client, include_usage=include_usage), record


@pytest.mark.parametrize("include_usage", [True, False])
async def test_a_stream_read_to_its_end_counts_its_usage_and_shows_it_when_asked(include_usage: bool) -> None:
    reads = Reads(READS[:2] + READS[2:])
    stream, record = await answer(reads, include_usage=include_usage)
    batches = [batch async for batch in stream.batches()]
    await stream.aclose()
    assert (record.prompt_tokens, record.completion_tokens, record.neurons) == (7, 3, 1.5)
    assert reads.closed
    last = batches[-1][-1]
    if include_usage:
        assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 7
    else:
        assert "usage" not in last and last["choices"][0]["finish_reason"] == "stop"


async def test_a_stream_closed_midway_still_counts_what_it_used() -> None:
    # The client hung up after the first batch: the tokens are counted (estimated: no usage event came yet).
    reads = Reads([event({"response": "Hello", "p": "x"}), event({"response": " there", "p": "x"})])
    stream, record = await answer(reads, include_usage=True)
    first = await anext(aiter(stream.batches()))
    assert first[0]["choices"][0]["delta"]["role"] == "assistant"
    assert record.completion_tokens == 0 and not record.usage_known
    await stream.aclose()
    assert reads.closed
    assert record.usage_known and record.prompt_tokens > 0 and record.completion_tokens > 0


async def test_a_failing_stream_counts_what_it_used_and_raises() -> None:
    reads = Reads([event({"response": "Hello", "p": "x"}), b"data: {not json}\n\n"])
    stream, record = await answer(reads, include_usage=True)
    with pytest.raises(Exception, match="malformed"):
        async for _ in stream.batches():
            pass
    assert record.usage_known and record.completion_tokens > 0
    await stream.aclose()
    assert reads.closed
