"""Answers read whole stay within upstream.whole's cap, on the lean and on httpx's way; a stream's event within
core.sse's: refused with UpstreamAnswerTooLarge (not retried), and through the proxy a 502 in OpenAI's words.

Real sockets on 127.0.0.1 (tests/upstream/test_workers_lean.py's raw server); the caps are lowered for the test.
"""

from __future__ import annotations

import gzip
from collections.abc import Awaitable

import httpx
import pytest

from cfai_cli.core import jsonfast, sse
from cfai_cli.errors import UpstreamAnswerTooLarge
from cfai_cli.upstream import whole
from cfai_cli.upstream.lean import PREFILL
from cfai_cli.upstream.workers import WorkersAIClient
from tests.upstream.test_workers_lean import BODY, MODEL, both_ways, http, streamed

pytestmark = pytest.mark.anyio

LIMIT = 4096
TOO_BIG = jsonfast.dumps({"result": {"response": "x" * (LIMIT + 1)}, "success": True})
FITS = jsonfast.dumps({"result": {"response": "x" * (LIMIT - 100)}, "success": True})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def small_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whole, "MAX_ANSWER_BYTES", LIMIT)
    monkeypatch.setattr(sse, "MAX_EVENT_CHARS", LIMIT)


def chunked(body: bytes, piece: int = 1000) -> bytes:
    """An answer without Content-Length, in several reads: only counting what arrives can bound it."""
    pieces = b"".join(b"%x\r\n%s\r\n|PAUSE|" % (len(body[i:i + piece]), body[i:i + piece])
                      for i in range(0, len(body), piece))
    return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-type: application/json\r\n\r\n|PAUSE|"
            + pieces + b"0\r\n\r\n")


async def test_an_answer_beyond_the_cap_is_refused_once_on_both_ways() -> None:
    for raw in (http(b"200 OK", TOO_BIG, b"Content-Type: application/json\r\n"), chunked(TOO_BIG)):
        lean, through = await both_ways(lambda n, raw=raw: raw, lambda w: w.run(MODEL, BODY))
        for seen, outcome, _ in (lean, through):
            assert len(seen) == 1  # not retried: the same request would bring the same answer
            assert outcome[0] is UpstreamAnswerTooLarge and "larger than 4,096 bytes" in outcome[1]


async def test_an_answer_within_the_cap_is_read_as_before() -> None:
    lean, through = await both_ways(lambda n: chunked(FITS), lambda w: w.run(MODEL, BODY))
    assert lean == through and lean[1] == {"response": "x" * (LIMIT - 100)}


@pytest.mark.parametrize("declared", [LIMIT * 10, PREFILL * 4])  # the second: what read_buffer would make
@pytest.mark.parametrize("call", ["run", "run_raw"])
async def test_a_declared_length_beyond_the_cap_is_refused_before_the_body_arrives(call: str, declared: int) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n|PAUSE|" % declared

    def calling(w: WorkersAIClient) -> Awaitable[object]:  # run_raw: an image call, one buffer on the lean way
        return w.run(MODEL, BODY) if call == "run" else w.run_raw(MODEL, json_body=BODY)

    lean, through = await both_ways(lambda n: head + b"{" * 100, calling)  # the rest never comes
    for _, outcome, _ in (lean, through):
        assert outcome[0] is UpstreamAnswerTooLarge


async def test_a_streamed_call_answered_whole_is_capped_too() -> None:
    lean, through = await both_ways(lambda n: chunked(TOO_BIG), streamed)
    assert lean[1][0] is through[1][0] is UpstreamAnswerTooLarge


async def test_a_small_compressed_answer_cannot_expand_past_the_cap() -> None:
    packed = gzip.compress(TOO_BIG)
    assert len(packed) < LIMIT

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=packed, headers={"content-encoding": "gzip",
                                                            "content-type": "application/json"})

    workers = WorkersAIClient(account_id="0123456789abcdef0123456789abcdef", api_token="t",
                              api_base="https://example.invalid/client/v4", timeout=5,
                              transport=httpx.MockTransport(answer))
    with pytest.raises(UpstreamAnswerTooLarge):
        await workers.run(MODEL, BODY)
    await workers.aclose()


def test_an_event_never_ended_stops_the_stream_and_normal_events_do_not() -> None:
    decoder = sse.SSEDecoder()
    for _ in range(100):  # a long stream of small events, split anywhere, is never held
        assert decoder.decode_data(b'data: {"response":"' + b"y" * 60) == []
        assert decoder.decode_data(b'"}\n\n') == ['{"response":"' + "y" * 60 + '"}']
    endless = sse.SSEDecoder()
    endless.decode_data(b"data: " + b"z" * (LIMIT - 200))
    with pytest.raises(UpstreamAnswerTooLarge, match="without ending it"):
        endless.decode_data(b"z" * 300)
    many_lines = sse.SSEDecoder()  # an event of many data lines and no blank line
    with pytest.raises(UpstreamAnswerTooLarge):
        for _ in range(LIMIT // 10 + 1):
            many_lines.decode(b"data: abcdefgh\n")
