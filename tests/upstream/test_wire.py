"""A connection's bytes on a BufferedProtocol (cfai_cli/upstream/wire.py): answers read whole into one buffer at
their declared length (an embeddings batch, ~1.6 MB), what arrives when nobody reads, and reading paused for a
slow reader. Real sockets on 127.0.0.1 through the Workers AI client (tests/upstream/test_workers_lean.py's raw
servers), on both event loops, against the same calls through httpx's objects where both ways exist."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cfai_cli.core import jsonfast
from cfai_cli.core.workers.vector_cut import CutVectors
from cfai_cli.errors import CfaiError, UpstreamTimeout
from cfai_cli.upstream.lean import PREFILL
from cfai_cli.upstream.transport import LeanTransport
from cfai_cli.upstream.wire import READ_HIGH_WATER, Wire
from cfai_cli.upstream.workers import WorkersAIClient
from tests.upstream.test_transport import LOOPS, Server, client, read_request, serving
from tests.upstream.test_workers_lean import ACCOUNT, Answers, both_ways, http, raw_server

pytestmark = pytest.mark.anyio

EMBED = "@cf/baai/bge-base-en-v1.5"
VECTOR = b"[" + b",".join(b"%.17f" % ((i % 97) / 1000 - 0.05) for i in range(768)) + b"]"
ENVELOPE = (b'{"result":{"shape":[40,768],"data":[' + b",".join([VECTOR] * 40)
            + b'],"pooling":"mean"},"success":true,"errors":[],"messages":[]}')
WHOLE = http(b"200 OK", ENVELOPE, b"content-type: application/json\r\ncf-ai-neurons: 3\r\n")


@pytest.fixture(params=LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


def test_the_answer_is_long_enough_to_be_received_in_place() -> None:
    assert len(ENVELOPE) > 2 * PREFILL


def _pieces(raw: bytes, *cuts: int) -> bytes:
    return b"|PAUSE|".join(raw[a:b] for a, b in zip((0, *cuts), (*cuts, len(raw)), strict=True))


@pytest.mark.parametrize("answers", [
    lambda n: WHOLE,
    lambda n: _pieces(WHOLE, 60, 200, 300_000),  # the head alone, then a little of the body, then the rest
    lambda n: _pieces(WHOLE, len(WHOLE) - len(ENVELOPE) + 10, len(WHOLE) - 1),  # the last byte alone
    lambda n: _pieces(WHOLE, 400_000) + b"|CLOSE|" if n == 0 else WHOLE,  # all of it, then closed: fine
])
async def test_an_embeddings_answer_read_whole_is_the_same_both_ways(answers: Answers) -> None:
    for vectors in (True, "text"):
        lean, through = await both_ways(answers, lambda w, v=vectors: w.run(EMBED, {"text": ["a"] * 40}, vectors=v))
        assert lean == through
        seen, outcome, neurons = lean
        assert len(seen) == 1 and neurons == [3.0]
        assert isinstance(outcome["data"], CutVectors) and outcome["data"].count == 40
        assert bytes(outcome["data"].text) == b"[" + b",".join([VECTOR] * 40) + b"]"
        # Checked in the buffer it was received into (read_buffer: no copy of 630 KB); its vectors leave as bytes.
        assert type(outcome["data"].body) is bytearray and type(through[1]["data"].body) is bytes
        assert outcome["data"].json_vectors() == through[1]["data"].json_vectors()
        assert {type(v.json) for v in outcome["data"].json_vectors()} == {bytes}


@pytest.mark.parametrize("cut", [100, len(WHOLE) - 1])
async def test_an_answer_cut_short_of_its_length_is_retried_the_same_both_ways(cut: int) -> None:
    lean, through = await both_ways(lambda n: WHOLE[:cut] + b"|CLOSE|" if n == 0 else WHOLE,
                                    lambda w: w.run(EMBED, {"text": ["a"] * 40}, vectors="text"))
    assert lean == through
    assert len(lean[0]) == 2 and isinstance(lean[1]["data"], CutVectors)


async def _twice(answers: Answers, *, timeout: float = 5) -> tuple[list[Any], Server]:
    """Two calls in turn on one lean client: their outcomes (a CfaiError's type), and the server."""
    seen: list[list[bytes]] = [[]]
    outcomes: list[Any] = []
    async with serving(raw_server(answers, seen)) as server:
        workers = WorkersAIClient(account_id=ACCOUNT, api_token="secret-token", api_base=server.url,
                                  timeout=timeout, transport=LeanTransport(max_connections=4))
        try:
            for _ in range(2):
                try:
                    outcomes.append(await workers.run(EMBED, {"text": ["a"] * 40}, vectors="text"))
                except CfaiError as exc:
                    outcomes.append(type(exc))
                await asyncio.sleep(0.1)  # whatever follows an answer has arrived
        finally:
            await workers.aclose()
    return outcomes, server


async def test_a_connection_is_reused_after_an_answer_read_in_place() -> None:
    outcomes, server = await _twice(lambda n: _pieces(WHOLE, 200, 300_000))
    assert all(isinstance(outcome["data"], CutVectors) for outcome in outcomes)
    assert server.accepted == 1


@pytest.mark.parametrize("after", [b"junk", b"|PAUSE|junk"])  # with the answer's last bytes, or on its own later
async def test_bytes_after_an_answer_read_in_place_spoil_its_connection(after: bytes) -> None:
    outcomes, server = await _twice(lambda n: _pieces(WHOLE, 300_000) + after)
    assert all(isinstance(outcome["data"], CutVectors) for outcome in outcomes)
    assert server.accepted == 2


async def test_bytes_arriving_on_an_idle_connection_spoil_it() -> None:
    small = http(b"200 OK", jsonfast.dumps({"result": {"shape": [1, 1], "data": [[0.5]]}, "success": True}))
    outcomes, server = await _twice(lambda n: small + b"|PAUSE|HTTP/1.1 200 OK\r\n")
    assert [outcome["data"].count for outcome in outcomes] == [1, 1]
    assert server.accepted == 2


async def test_an_answer_that_stalls_while_received_in_place_ends_at_the_deadline() -> None:
    async def stalls(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(WHOLE[:400_000])
        await writer.drain()
        await asyncio.sleep(10)

    async with serving(stalls) as server:
        transport = LeanTransport(max_connections=4)
        workers = WorkersAIClient(account_id=ACCOUNT, api_token="secret-token", api_base=server.url, timeout=0.5,
                                  transport=transport)
        try:
            with pytest.raises(UpstreamTimeout):
                await workers.for_attempt(retry=False, waits=None).run(EMBED, {"text": ["a"] * 40}, vectors="text")
            assert transport.connections == 0  # dropped, not pooled half read
        finally:
            await workers.aclose()


async def test_an_answer_received_before_it_is_read_is_parsed_first() -> None:
    async def answers(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(WHOLE[:100])  # the head's start: open() waits for the rest of it
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(WHOLE[100:])

    async with serving(answers) as server:
        lean = LeanTransport(max_connections=4)
        head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        try:
            for _ in range(2):
                body = await lean.open(("http", "127.0.0.1", server.port), head, b"", 5)
                await asyncio.sleep(0.1)  # the whole answer has arrived, unread
                assert await body.read() == ENVELOPE
            assert server.accepted == 1
        finally:
            await lean.aclose()


class _Transport:
    """What Wire calls on its transport for flow control."""

    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


async def test_reading_pauses_while_too_much_is_unread_and_resumes_once_it_is_read() -> None:
    wire, transport = Wire(), _Transport()
    wire.connection_made(transport)  # type: ignore[arg-type]
    received = b""
    for _ in range(20):  # 2 MB at most
        if transport.paused:
            break
        buffer = wire.get_buffer(-1)
        piece = bytes([len(received) % 251]) * min(len(buffer), 100_000)
        buffer[:len(piece)] = piece
        wire.buffer_updated(len(piece))
        received += piece
    assert READ_HIGH_WATER < len(received) <= READ_HIGH_WATER + 100_000
    assert wire.take() == received and transport.resumed == 1 and wire.take() is None


async def test_a_fill_receives_in_place_and_never_past_its_end() -> None:
    wire, buffer = Wire(), bytearray(10)
    wire.connection_made(_Transport())  # type: ignore[arg-type]
    wire.fill(buffer, 3)
    view = wire.get_buffer(-1)
    assert len(view) == 7
    view[:7] = b"abcdefg"
    wire.buffer_updated(7)
    assert buffer == b"\x00\x00\x00abcdefg" and wire.filled_to == 10
    assert len(wire.get_buffer(-1)) > 10 and wire.take() is None  # the scratch buffer again


async def test_connections_read_at_once_each_get_their_own_bytes() -> None:
    # One scratch buffer serves a thread's connections: each read is copied out before the next lands in it.
    transport = LeanTransport(max_connections=8)
    async with serving() as server, client(transport) as http:
        bodies = [bytes([65 + i]) * (150_000 + i) for i in range(8)]  # several reads each, below the in-place size
        answers = await asyncio.gather(*(http.post(f"{server.url}/{i}", content=body)
                                         for i, body in enumerate(bodies)))
        assert [answer.content for answer in answers] == [b"/%d|%s" % (i, body) for i, body in enumerate(bodies)]
        assert server.peak > 1
