"""The Workers AI client's JSON calls on the lean transport (bytes in, bytes out, no httpx Request or Response)
against the same calls through httpx's objects: the same bytes on the wire, the same results and errors.

Real sockets on 127.0.0.1 (the raw servers of tests/upstream/test_transport.py). "Through httpx" is the same
LeanTransport behind a wrapper that is not one, so the client builds httpx.Request and reads httpx.Response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from cfai_cli.core import jsonfast
from cfai_cli.errors import CfaiError, UpstreamTimeout, UpstreamUnanswered
from cfai_cli.upstream.transport import LeanTransport
from cfai_cli.upstream.workers import WorkersAIClient
from tests.upstream.test_transport import Server, serving

pytestmark = pytest.mark.anyio

ACCOUNT = "0123456789abcdef0123456789abcdef"
MODEL = "@cf/meta/llama-3.1-8b-instruct"
BODY = {"messages": [{"role": "user", "content": "Say héllo."}], "max_tokens": 16}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _ThroughHttpx(httpx.AsyncBaseTransport):
    """The lean transport, not seen as one: the client takes httpx's way (Request, Response, aread)."""

    def __init__(self) -> None:
        self.inner = LeanTransport(max_connections=4)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Log:
    """Where an attempt counts its waiting and the neurons Workers AI reported (upstream.provider.WaitLog)."""

    def __init__(self) -> None:
        self.upstream_wait = 0.0
        self.neurons: list[float] = []

    def add_neurons(self, neurons: float) -> None:
        self.neurons.append(neurons)


Answers = Callable[[int], bytes]  # the n-th request on the server (from 0) -> the raw answer to write


def raw_server(answers: Answers, seen: list[list[bytes]]) -> Callable[[Server, asyncio.StreamReader,
                                                                        asyncio.StreamWriter], Awaitable[None]]:
    """Each request's raw bytes (head and body) into the last list of `seen` (one per client); answered with
    `answers(its number there)`; an empty answer closes the connection without one."""

    async def handler(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            seen[-1].append(head + await reader.readexactly(length))
            raw = answers(len(seen[-1]) - 1)
            if not raw:
                writer.close()
                return
            for part in raw.removesuffix(b"|CLOSE|").split(b"|PAUSE|"):  # an answer in several reads
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)
            if raw.endswith(b"|CLOSE|"):  # then the connection closed (a body cut short)
                writer.close()
                return

    return handler


def http(status: bytes, body: bytes, headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), headers, body)


async def both_ways(answers: Answers, call: Callable[[WorkersAIClient], Awaitable[Any]]
                    ) -> list[tuple[list[bytes], Any, list[float]]]:
    """`call` on a lean client and on one through httpx, one after the other on one server: what it read of each, what
    the call gave (its result, or its error's type, message and retry_after), and the neurons it noted."""
    outcomes = []
    seen: list[list[bytes]] = []
    async with serving(raw_server(answers, seen)) as server:
        for transport in (LeanTransport(max_connections=4), _ThroughHttpx()):
            seen.append([])
            workers = WorkersAIClient(account_id=ACCOUNT, api_token="secret-token", api_base=server.url, timeout=5,
                                      transport=transport)
            assert (workers._lean is not None) is isinstance(transport, LeanTransport)
            log = _Log()
            try:
                outcome: Any = await call(workers.for_attempt(retry=True, waits=log))
            except CfaiError as exc:
                outcome = (type(exc), exc.message, exc.retry_after)
            finally:
                await workers.aclose()
            outcomes.append((seen[-1], outcome, log.neurons))
    return outcomes


async def test_a_json_call_sends_the_same_bytes_and_reads_the_same_answer() -> None:
    result = jsonfast.dumps({"result": {"response": "hi"}, "success": True, "errors": []})
    lean, through = await both_ways(lambda n: http(b"200 OK", result, b"Content-Type: application/json\r\n"
                                                   b"CF-AI-Neurons: 1.25\r\n"),
                                    lambda w: w.run(MODEL, BODY, affinity="conv-1"))
    assert lean == through
    seen, outcome, neurons = lean
    assert outcome == {"response": "hi"} and neurons == [1.25]
    assert seen[0].startswith(b"POST /accounts/%s/ai/run/%s HTTP/1.1\r\nHost: 127.0.0.1:" % (ACCOUNT.encode(),
                                                                                             MODEL.encode()))
    assert b"\r\nx-session-affinity: conv-1\r\n" in seen[0] and seen[0].endswith(jsonfast.dumps(BODY))


async def test_an_answer_in_pieces_and_repeated_headers_read_as_httpx_reads_them() -> None:
    body = jsonfast.dumps({"result": {"response": "x" * 5000}, "success": True})
    chunked = b"".join(b"%x\r\n%s\r\n|PAUSE|" % (len(part), part) for part in (body[:7], body[7:3000], body[3000:]))
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-type: application/json\r\n"
           b"cf-ai-neurons: 2\r\n|PAUSE|\r\n" + chunked + b"0\r\n\r\n")
    lean, through = await both_ways(lambda n: raw, lambda w: w.run(MODEL, BODY))
    assert lean == through
    assert lean[1] == {"response": "x" * 5000} and lean[2] == [2.0]


async def test_errors_retries_and_retry_after_are_the_same() -> None:
    busy = jsonfast.dumps({"success": False, "errors": [{"code": 3040, "message": "Capacity temporarily exceeded"}]})
    bad = jsonfast.dumps({"success": False, "errors": [{"code": 5006, "message": "AiError: bad input"}]})
    ok = jsonfast.dumps({"result": {"response": "later"}})

    def answers(n: int) -> bytes:  # a capacity 429 (retried after its Retry-After), then a client error
        return http(b"429 Too Many Requests", busy, b"retry-after: 0\r\n") if n == 0 else http(b"400 Bad", bad)

    lean, through = await both_ways(answers, lambda w: w.run(MODEL, BODY))
    assert lean == through
    assert len(lean[0]) == 2 and lean[1][0].__name__ == "InvalidRequest" and "bad input" in lean[1][1]
    lean, through = await both_ways(lambda n: http(b"200 OK", ok, b"Content-Type: text/html\r\n"),
                                    lambda w: w.run(MODEL, BODY))  # an HTML page from something in between
    assert lean == through and lean[1][0].__name__ == "UpstreamError"


async def test_a_connection_closed_before_any_answer_is_not_resent() -> None:
    lean, through = await both_ways(lambda n: b"", lambda w: w.run(MODEL, BODY))
    assert lean == through
    seen, outcome, _ = lean
    assert len(seen) == 1 and outcome[0] is UpstreamUnanswered


async def test_a_server_that_never_answers_ends_at_the_deadline_and_its_connection_is_dropped() -> None:
    async def silent(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await reader.read(1 << 16)  # until the client gives up and closes

    async with serving(silent) as server:
        workers = WorkersAIClient(account_id=ACCOUNT, api_token="secret-token", api_base=server.url, timeout=0.5,
                                  transport=LeanTransport(max_connections=2))
        assert workers._lean is not None
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamTimeout, match=r"did not answer within 0\.5 s"):
            await workers.run(MODEL, BODY)
        assert asyncio.get_running_loop().time() - started < 2.0
        await server.wait_closed()  # closed by the client, not kept checked out
        await workers.aclose()


# ---- streams on the lean transport (issue 25 round 6) ----------------------------------------------------------


async def streamed(workers: WorkersAIClient) -> Any:
    """A streamed call read to its end: its events' bytes (or the JSON result sent instead) and neurons."""
    answer = await workers.stream(MODEL, BODY, affinity="conv-2")
    try:
        if answer.chunks is None:
            return "json", answer.result, answer.neurons
        return "sse", b"".join([chunk async for chunk in answer.chunks]), answer.neurons
    finally:
        await answer.aclose()


EVENTS = [b'data: {"response":"he"}\n\n', b'data: {"response":"llo","usage":{"neurons":3}}\n\n', b"data: [DONE]\n\n"]


def sse(events: list[bytes], headers: bytes = b"") -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n|PAUSE|" % (len(event), event) for event in events)
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n" + headers
            + b"\r\n|PAUSE|" + chunks + b"0\r\n\r\n")


async def test_a_stream_sends_the_same_bytes_and_reads_the_same_events() -> None:
    lean, through = await both_ways(lambda n: sse(EVENTS, b"cf-ai-neurons: 4.5\r\n"), streamed)
    assert lean == through
    seen, outcome, neurons = lean
    assert outcome == ("sse", b"".join(EVENTS), 4.5) and neurons == [4.5]
    assert b"\r\nx-session-affinity: conv-2\r\n" in seen[0] and seen[0].endswith(jsonfast.dumps(BODY))


async def test_a_stream_answered_at_once_reads_the_same_and_its_received_bytes_arm_no_timer() -> None:
    # Head and events in one write: the lean body holds the events when the stream opens, so its first read needs no
    # wait and arms no deadline's timer (LeanBody.ready); through httpx every read waits under one. Same bytes.
    at_once = sse(EVENTS).replace(b"|PAUSE|", b"")
    timers: list[float] = []

    async def counted(workers: WorkersAIClient) -> Any:
        loop = asyncio.get_running_loop()
        call_at = loop.call_at

        def counting(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            timers.append(when)
            return call_at(when, *args, **kwargs)

        answer = await workers.stream(MODEL, BODY, affinity="conv-2")
        assert answer.chunks is not None
        loop.call_at = counting  # type: ignore[method-assign]
        try:
            first = await anext(answer.chunks)
            armed, timers[:] = len(timers), []
            rest = b"".join([chunk async for chunk in answer.chunks])
        finally:
            del loop.call_at
            await answer.aclose()
        return first + rest, armed

    lean, through = await both_ways(lambda n: at_once, counted)
    assert lean[1] == (b"".join(EVENTS), 0) and through[1][0] == lean[1][0]
    assert through[1][1] >= 1  # a read through httpx waits under the deadline (and its own read timeout)


async def test_a_stream_answered_with_json_or_an_error_reads_the_same() -> None:
    result = jsonfast.dumps({"result": {"response": "whole"}, "success": True})
    bad = jsonfast.dumps({"success": False, "errors": [{"code": 5006, "message": "AiError: bad input"}]})
    for answer in (http(b"200 OK", result, b"Content-Type: application/json\r\n"), http(b"400 Bad", bad)):
        lean, through = await both_ways(lambda n, answer=answer: answer, streamed)  # type: ignore[misc]
        assert lean == through
    assert lean[1][0].__name__ == "InvalidRequest" and "bad input" in lean[1][1]


async def test_an_encoded_stream_is_decoded_as_httpx_decodes_it() -> None:
    import gzip

    packed = gzip.compress(b"".join(EVENTS))
    lean, through = await both_ways(lambda n: sse([packed[:9], packed[9:]], b"content-encoding: gzip\r\n"), streamed)
    assert lean == through and lean[1] == ("sse", b"".join(EVENTS), None)


def test_a_one_shot_call_never_imports_httpx_and_fails_in_the_same_words(tmp_path: Any) -> None:
    """The lean transport's JSON and streamed calls go out without importing httpx (upstream.httperrors); a failure
    imports it to raise httpx's exception, and the client's words are the same as with httpx already imported."""
    import os
    import socket
    import subprocess
    import sys

    script = tmp_path / "one_shot.py"
    script.write_text(f'''
import asyncio, json, sys
from cfai_cli.upstream.workers import WorkersAIClient
from cfai_cli.errors import CfaiError

async def main(url):
    workers = WorkersAIClient(account_id="{ACCOUNT}", api_token="t", api_base=url, timeout=5, max_retries=0)
    try:
        answer = await workers.stream("{MODEL}", {{"prompt": "hi"}})
        print(json.dumps(answer.result))
        await answer.aclose()
        print(json.dumps(await workers.run("{MODEL}", {{"prompt": "hi"}})))
    except CfaiError as exc:
        print(type(exc).__name__, exc.message)
    finally:
        await workers.aclose()
    print("httpx" in sys.modules)

asyncio.run(main(sys.argv[1]))
''')
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}

    def run(url: str) -> list[str]:
        done = subprocess.run([sys.executable, str(script), url], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    body = jsonfast.dumps({"result": {"response": "hi"}, "success": True})

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                writer.write(http(b"200 OK", body, b"Content-Type: application/json\r\n"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def served() -> list[str]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        try:
            return await asyncio.to_thread(run, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/client/v4")
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(served()) == ['{"response": "hi"}'] * 2 + ["False"]
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/client/v4"
        failed = run(url)

    async def in_process() -> str:  # the same call, httpx imported (it is, in this process)
        workers = WorkersAIClient(account_id=ACCOUNT, api_token="t", api_base=url, timeout=5, max_retries=0)
        try:
            await workers.stream(MODEL, {"prompt": "hi"})
        except CfaiError as exc:
            return f"{type(exc).__name__} {exc.message}"
        finally:
            await workers.aclose()
        raise AssertionError("no failure")

    assert "httpx" in sys.modules
    assert failed == [asyncio.run(in_process()), "True"]
    assert failed[0].startswith("UpstreamError Could not reach Workers AI: ConnectError: Could not connect to")


IMAGE_MODEL = "@cf/black-forest-labs/flux-1-schnell"
IMAGE_BODY = {"prompt": "a fox", "seed": 7, "steps": 4}
# Canonical base64, ~280 KB: more than one read, and beyond upstream.lean's PREFILL (read into one buffer).
_B64 = b"/9j/" + b"QUJD" * 70000


def _image_answers() -> list[Answers]:
    import gzip

    envelope = b'{"result":{"image":"' + _B64 + b'"},"success":true,"errors":[]}'
    busy = jsonfast.dumps({"success": False, "errors": [{"code": 3040, "message": "Capacity temporarily exceeded"}]})
    json_type = b"content-type: application/json\r\n"
    whole = http(b"200 OK", envelope, json_type + b"cf-ai-neurons: 4.5\r\n")  # in three reads
    return [
        lambda n: whole[:120] + b"|PAUSE|" + whole[120:70000] + b"|PAUSE|" + whole[70000:],
        lambda n: http(b"200 OK", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 1100, b"content-type: image/png\r\n"),
        lambda n: http(b"200 OK", b'{"result":{"image":"not base64!"},"success":true}', json_type),
        lambda n: http(b"429 Too Many Requests", busy, json_type + b"retry-after: 0\r\n") if n == 0
        else http(b"200 OK", envelope, json_type),
        lambda n: http(b"400 Bad Request", jsonfast.dumps({"success": False, "errors": [
            {"code": 5006, "message": "AiError: NSFW content"}]}), json_type),
        lambda n: http(b"200 OK", gzip.compress(envelope), json_type + b"content-encoding: gzip\r\n"),
        lambda n: whole[:200000] + b"|CLOSE|" if n == 0 else whole,  # cut short of its length: retried
    ]


@pytest.mark.parametrize("case", range(len(_image_answers())))
async def test_an_image_call_sends_the_same_bytes_and_reads_the_same_answer(case: int) -> None:
    lean, through = await both_ways(_image_answers()[case], lambda w: w.run_raw(IMAGE_MODEL, json_body=IMAGE_BODY))
    assert lean == through
    seen, outcome, neurons = lean
    assert neurons == ([4.5] if case in (0, 6) else [])  # the cut answer noted none
    assert seen[0].startswith(b"POST /accounts/%s/ai/run/%s HTTP/1.1\r\n" % (ACCOUNT.encode(), IMAGE_MODEL.encode()))
    assert seen[0].endswith(b"\r\n\r\n" + jsonfast.dumps(IMAGE_BODY))
    if case in (0, 3, 5, 6):
        # The image is a view of the answer's bytes (not copied out), and result.image the same view.
        assert isinstance(outcome.image, memoryview) and bytes(outcome.image) == _B64 and outcome.body is None
        assert outcome.result == {"image": outcome.image} and outcome.result["image"] is outcome.image
    if case in (0, 3, 6):  # read into one buffer made at its Content-Length (LeanBody.read_buffer): no join
        assert isinstance(outcome.image.obj, bytearray) and isinstance(through[1].image.obj, bytes)
    if case in (3, 6):
        assert len(seen) == 2  # the capacity 429, the body cut short: retried
