"""The lean HTTP/1.1 transport (cfai_cli/upstream/transport.py) against real sockets on 127.0.0.1.

Every server here is a few lines of raw asyncio written in the test, so each one can misbehave exactly as
needed: keep connections, drop them, reset them, stall, lie about lengths. Through httpx.AsyncClient, as the
upstream clients use it. Failures go through `failure()`, which also checks that the API token is in no
exception text. Timing figures are bounds that prove "no hang", not performance claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cfai_cli.emulator import create_emulator_app
from cfai_cli.service.context import open_context
from cfai_cli.settings import load_settings
from cfai_cli.upstream.network import _Draining as Draining
from cfai_cli.upstream.transport import LeanTransport, lean_transport, proxies_configured

pytestmark = pytest.mark.anyio

TOKEN = "cf-secret-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


try:
    import uvloop

    LOOPS: list[object] = ["asyncio", pytest.param(("asyncio", {"loop_factory": uvloop.new_event_loop}), id="uvloop")]
except ImportError:  # pragma: no cover - uvloop is not on Windows
    LOOPS = ["asyncio"]


@pytest.fixture(params=LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both event loops: `cfai serve` runs on uvloop, the CLI and the other tests on asyncio's own."""
    return request.param


# ---- a raw HTTP/1.1 server -------------------------------------------------------------------------------


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes] | None:
    """(request line, headers lowercased, body) or None when the client closed; bodies by length or chunked."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    line, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for item in lines:
        name, _, value = item.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                break
    else:
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return line, headers, body


def answer(body: bytes = b"ok", status: bytes = b"200 OK", headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), headers, body)


Handler = Callable[["Server", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def keep_alive(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with its path and body echoed."""
    while (request := await read_request(reader)) is not None:
        server.requests.append(request)
        line, _, body = request
        writer.write(answer(line.split()[1] + b"|" + body))
        await writer.drain()


class Server:
    def __init__(self, handler: Handler = keep_alive, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepted = 0
        self.open = 0
        self.peak = 0
        self.requests: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.url = ""
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.writers.append(writer)
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except RuntimeError:  # uvloop: writing to a connection the client closed
            pass
        finally:
            self.open -= 1
            writer.close()

    async def wait_closed(self, open_: int = 0) -> None:
        """Until the server sees no more than `open_` connections (the client closed the others)."""
        async with asyncio.timeout(5):
            while self.open > open_:
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def serving(handler: Handler = keep_alive, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler, tls=tls)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.port}"
    try:
        yield server
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()


@contextlib.asynccontextmanager
async def client(transport: LeanTransport, **options: object) -> AsyncIterator[httpx.AsyncClient]:
    options.setdefault("timeout", 5.0)
    async with httpx.AsyncClient(transport=transport, headers=AUTH, **options) as http:  # type: ignore[arg-type]
        yield http


async def failure(call: Awaitable[object], *kinds: type[BaseException]) -> BaseException:
    """The exception `call` raised, of one of `kinds`, with the token nowhere in its text or chain."""
    with pytest.raises(kinds) as caught:
        async with asyncio.timeout(10):
            await call
    seen: BaseException | None = caught.value
    while seen is not None:
        assert TOKEN not in str(seen) and TOKEN not in repr(seen), seen
        assert all(TOKEN not in str(arg) for arg in seen.args)
        seen = seen.__cause__ or seen.__context__
    return caught.value


def checked_out(transport: LeanTransport) -> int:
    return transport.connections - transport.idle_connections


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")


# ---- keep-alive and the pool -----------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection() -> None:
    transport = LeanTransport(max_connections=4)
    async with serving() as server, client(transport) as http:
        for i in range(20):
            response = await http.post(f"{server.url}/n/{i}", content=b"body%d" % i)
            assert response.status_code == 200 and response.content == b"/n/%d|body%d" % (i, i)
            assert response.http_version == "HTTP/1.1" and response.reason_phrase == "OK"
        assert server.accepted == 1
        assert transport.connections == 1 and transport.idle_connections == 1
        line, headers, _ = server.requests[0]
        assert line == b"POST /n/0 HTTP/1.1"
        assert headers[b"host"] == f"127.0.0.1:{server.port}".encode() and headers[b"content-length"] == b"5"


async def test_pool_limit_queues_callers_first_come_first_served() -> None:
    release = asyncio.Event()

    async def slow(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            server.requests.append(request)
            await release.wait()
            writer.write(answer(request[2]))
            await writer.drain()

    transport = LeanTransport(max_connections=3)
    async with serving(slow) as server, client(transport) as http:
        calls = []
        for i in range(12):
            calls.append(asyncio.create_task(http.post(server.url, content=b"%02d" % i)))
            await asyncio.sleep(0.002)  # a known order of arrival
        async with asyncio.timeout(5):
            while len(server.requests) < 3:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert server.accepted == 3 and len(server.requests) == 3  # the rest wait for a connection, no error
        release.set()
        answers = await asyncio.gather(*calls)
        assert [a.content for a in answers] == [b"%02d" % i for i in range(12)]
        assert server.peak == 3 and server.accepted == 3  # waiters were handed the released connections
        assert [r[2] for r in server.requests][3:] == [b"%02d" % i for i in range(3, 12)]  # FIFO
        assert checked_out(transport) == 0


async def test_pool_timeout_and_a_waiter_cancelled_in_the_queue() -> None:
    release = asyncio.Event()

    async def held(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            await release.wait()
            writer.write(answer(request[2]))
            await writer.drain()

    transport = LeanTransport(max_connections=1)
    async with serving(held) as server, client(transport) as http:
        first = asyncio.create_task(http.post(server.url, content=b"first"))
        await asyncio.sleep(0.05)
        await failure(http.post(server.url, content=b"x", timeout=httpx.Timeout(5, pool=0.1)), httpx.PoolTimeout)
        waiting = asyncio.create_task(http.post(server.url, content=b"cancelled"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert (await first).content == b"first"
        assert (await http.post(server.url, content=b"after")).content == b"after"
        assert server.accepted == 1 and checked_out(transport) == 0


async def test_requests_to_another_host_take_the_place_of_an_idle_connection() -> None:
    transport = LeanTransport(max_connections=1)
    async with serving() as one, serving() as two, client(transport) as http:
        assert (await http.get(one.url)).status_code == 200
        assert (await http.get(two.url)).status_code == 200  # the idle connection to `one` made room
        await one.wait_closed()
        assert transport.connections == 1


async def test_idle_connections_expire_even_without_traffic() -> None:
    transport = LeanTransport(max_connections=4, keepalive_expiry=0.2)
    async with serving() as server, client(transport) as http:
        await asyncio.gather(*(http.get(server.url) for _ in range(3)))
        assert transport.idle_connections == server.open >= 1
        await server.wait_closed()  # the prune timer closed them
        assert transport.connections == 0
        assert (await http.get(server.url)).status_code == 200


async def test_places_freed_while_callers_wait_go_to_the_first_of_them() -> None:
    """A broken or early-closed connection, or one to another host, frees its place for the first waiter."""
    transport = LeanTransport(max_connections=1)
    async with serving(endless) as slow, serving() as other, client(transport) as http:
        async with http.stream("GET", slow.url):
            waiting = asyncio.create_task(http.get(f"{slow.url}/quick"))
            elsewhere = asyncio.create_task(http.get(other.url))
            await asyncio.sleep(0.05)
            assert not waiting.done() and not elsewhere.done()
        assert (await waiting).content == b"quick"  # the closed stream's place, a new connection in it
        assert (await elsewhere).status_code == 200  # `slow`'s idle connection closed to make room
        assert slow.accepted == 2 and other.accepted == 1 and transport.connections == 1
        await slow.wait_closed()


async def test_a_place_handed_over_as_its_waiter_gives_up_is_passed_on() -> None:
    transport = LeanTransport(max_connections=1)
    key = ("http", "127.0.0.1", 9)
    assert await transport.pool.acquire(key, None) is None and transport.connections == 1  # the only place, taken
    waiter = asyncio.create_task(transport.pool.acquire(key, None))
    await asyncio.sleep(0)
    transport.pool.free_slot()  # handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert transport.connections == 0 and not transport.pool._waiters


async def test_expired_and_unexpected_data_connections_are_not_reused() -> None:
    async def junk(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            tail = b"junk after the answer" if request[0].split()[1] == b"/junk" else b""
            writer.write(answer(b"ok") + tail)
            await writer.drain()

    transport = LeanTransport(max_connections=2)
    async with serving(junk) as server, client(transport, timeout=None) as http:
        assert (await http.get(f"{server.url}/junk")).content == b"ok"
        assert transport.connections == 0  # bytes nobody asked for: not reusable
        assert (await http.get(server.url)).content == b"ok"
        for idle in transport.pool._idle.values():
            idle[0].idle_since -= 60  # past its expiry, the prune timer not run yet
        assert (await http.get(server.url)).content == b"ok"
        assert server.accepted == 3


async def test_the_prune_timer_closes_each_connection_at_its_own_expiry() -> None:
    transport = LeanTransport(max_connections=4, keepalive_expiry=0.3)
    async with serving() as one, serving() as two, client(transport) as http:
        await http.get(one.url)
        await asyncio.sleep(0.2)
        await http.get(two.url)
        await one.wait_closed()
        assert two.open == 1 and transport.connections == 1
        await two.wait_closed()
        assert transport.connections == 0


async def test_aclose_fails_callers_still_waiting_for_a_connection() -> None:
    transport = LeanTransport(max_connections=1)
    async with serving(endless) as server, client(transport) as http:
        async with http.stream("GET", server.url):
            waiting = asyncio.create_task(http.get(server.url))
            await asyncio.sleep(0.05)
            await transport.aclose()
            await failure(waiting, httpx.ConnectError)
        assert transport.connections == 0


async def test_aclose_closes_every_pooled_connection() -> None:
    transport = LeanTransport(max_connections=8)
    async with serving() as server:
        async with client(transport) as http:
            await asyncio.gather(*(http.get(server.url) for _ in range(5)))
            assert server.open >= 1
        await server.wait_closed()
        assert transport.connections == 0


# ---- bodies ----------------------------------------------------------------------------------------------


async def test_chunked_content_length_and_close_delimited_bodies() -> None:
    async def bodies(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            path = request[0].split()[1]
            if path == b"/chunked":
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                for part in (b"hello ", b"chunked ", b"world"):
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                    await writer.drain()
                    await asyncio.sleep(0.01)
                writer.write(b"0\r\n\r\n")
            elif path == b"/close":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
                await writer.drain()
                await asyncio.sleep(0.01)
                writer.write(b"the end")
                await writer.drain()
                return  # closing the connection ends the body
            else:
                writer.write(answer(b"x" * 300_000))  # several reads
            await writer.drain()

    transport = LeanTransport(max_connections=4)
    async with serving(bodies) as server, client(transport) as http:
        assert (await http.get(f"{server.url}/chunked")).content == b"hello chunked world"
        assert (await http.get(f"{server.url}/length")).content == b"x" * 300_000
        assert server.accepted == 1
        assert (await http.get(f"{server.url}/close")).content == b"until the end"
        assert transport.connections == 0  # a read-until-close connection is never reused
        assert (await http.get(f"{server.url}/chunked")).content == b"hello chunked world"
        assert server.accepted == 2


async def test_head_204_304_and_1xx_have_no_body_and_keep_the_connection() -> None:
    async def empty(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            method, path = request[0].split()[:2]
            if method == b"HEAD":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
            elif path == b"/204":
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif path == b"/304":
                writer.write(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
                writer.write(answer(b"final", headers=b"x-final: 1\r\n"))
            await writer.drain()

    transport = LeanTransport(max_connections=4)
    async with serving(empty) as server, client(transport) as http:
        head = await http.head(server.url)
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "1234"
        assert (await http.get(f"{server.url}/204")).status_code == 204
        not_modified = await http.get(f"{server.url}/304")
        assert not_modified.status_code == 304 and not_modified.content == b""
        final = await http.get(f"{server.url}/hints")
        assert final.status_code == 200 and final.content == b"final" and "link" not in final.headers
        assert server.accepted == 1


async def test_request_bodies_bytes_multipart_and_chunked_stream() -> None:
    transport = LeanTransport(max_connections=2)
    async with serving() as server, client(transport) as http:
        big = os.urandom(200_000)
        assert (await http.post(server.url, content=big)).content == b"/|" + big
        await http.post(server.url, files={"file": ("a.wav", b"RIFF....", "audio/wav")}, data={"model": "m"})
        _, headers, body = server.requests[-1]
        assert headers[b"content-type"].startswith(b"multipart/form-data; boundary=")
        assert int(headers[b"content-length"]) == len(body)
        assert b'name="model"\r\n\r\nm\r\n' in body and b"RIFF...." in body

        async def parts() -> AsyncIterator[bytes]:
            for part in (b"streamed ", b"", b"request ", b"body"):
                yield part

        assert (await http.post(server.url, content=parts())).content == b"/|streamed request body"
        assert server.requests[-1][1][b"transfer-encoding"] == b"chunked"
        assert server.accepted == 1


async def test_sse_chunks_arrive_before_the_server_sends_the_next() -> None:
    step = asyncio.Event()

    async def sse(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(5):
                event = b"data: {\"n\": %d}\n\n" % i
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                await step.wait()  # the next event only once the client has this one
                step.clear()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    transport = LeanTransport(max_connections=2)
    async with serving(sse) as server, client(transport) as http, http.stream("POST", server.url, json={}) as response:
        seen = []
        async with asyncio.timeout(5):
            async for chunk in response.aiter_bytes():
                seen.append(chunk)
                step.set()
        assert seen == [b"data: {\"n\": %d}\n\n" % i for i in range(5)]
        assert transport.idle_connections == 1 and checked_out(transport) == 0  # back to the pool at its end


# ---- closing early, cancellation -------------------------------------------------------------------------


async def endless(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A chunked body that trickles forever, except on /quick which answers at once."""
    while (request := await read_request(reader)) is not None:
        if request[0].split()[1] == b"/quick":
            writer.write(answer(b"quick"))
            await writer.drain()
            continue
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"4\r\ntick\r\n")
            await writer.drain()
            await asyncio.sleep(0.002)


async def test_closing_a_stream_early_closes_its_connection_and_the_next_request_works() -> None:
    transport = LeanTransport(max_connections=1)
    async with serving(endless) as server, client(transport) as http:
        async with http.stream("GET", server.url) as response:
            async for chunk in response.aiter_bytes():
                assert b"tick" in chunk
                break
        assert transport.connections == 0
        await server.wait_closed()
        assert (await http.get(f"{server.url}/quick")).content == b"quick"
        assert server.accepted == 2


@needs_proc
async def test_cancellation_at_any_point_leaves_nothing_checked_out_and_no_descriptor() -> None:
    transport = LeanTransport(max_connections=4)
    rng = random.Random(8)
    async with serving(endless) as server, client(transport) as http:
        assert (await http.get(f"{server.url}/quick")).status_code == 200
        baseline = open_fds()

        async def read_some() -> None:
            async with http.stream("GET", server.url) as response:
                async for _ in response.aiter_bytes():
                    pass

        for _ in range(60):
            task = asyncio.create_task(read_some())
            await asyncio.sleep(rng.uniform(0, 0.004))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert checked_out(transport) == 0
        for _ in range(20):  # asyncio.timeout cancels the same way
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rng.uniform(0, 0.003)):
                    await read_some()
            assert checked_out(transport) == 0
        await server.wait_closed(open_=transport.idle_connections)
        await asyncio.sleep(0.05)
        assert open_fds() <= baseline + transport.idle_connections
        assert (await http.get(f"{server.url}/quick")).content == b"quick"


@needs_proc
async def test_a_response_dropped_without_closing_gives_its_connection_up() -> None:
    transport = LeanTransport(max_connections=1)
    async with serving(endless) as server, client(transport) as http:
        response = await http.send(http.build_request("GET", server.url), stream=True)
        assert transport.connections == 1
        del response
        gc.collect()
        assert transport.connections == 0
        assert (await http.get(f"{server.url}/quick")).content == b"quick"


# ---- stale keep-alive connections ------------------------------------------------------------------------


async def test_a_pooled_connection_the_server_closed_is_replaced_transparently() -> None:
    async def one_answer(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is not None:
            writer.write(answer(b"once"))
            await writer.drain()

    transport = LeanTransport(max_connections=2)
    async with serving(one_answer) as server, client(transport) as http:
        for _ in range(5):
            assert (await http.get(server.url)).content == b"once"
            await server.wait_closed()
        assert server.accepted == 5


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_request_written_to_a_connection_that_then_breaks_is_never_sent_twice(method: str) -> None:
    """The server reads a request on a reused connection, then closes it without a word (the keep-alive race,
    or a server that dies mid-request): the request may have been acted on, so it is not sent again."""

    async def closes_second(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if request is not None:
            server.requests.append(request)
            writer.write(answer(b"first"))
            await writer.drain()
        request = await read_request(reader)
        if request is not None:
            server.requests.append(request)  # the second request on this connection: close without a word

    transport = LeanTransport(max_connections=2)
    async with serving(closes_second) as server, client(transport) as http:
        assert (await http.request(method, server.url, content=b"a")).content == b"first"
        error = await failure(http.request(method, server.url, content=b"b"), httpx.RemoteProtocolError)
        assert "without sending a response" in str(error)
        assert server.accepted == 1 and [r[2] for r in server.requests] == [b"a", b"b"]
        assert transport.connections == 0
        assert (await http.request(method, server.url, content=b"c")).content == b"first"  # a new connection
        assert server.accepted == 2


async def test_a_connection_that_breaks_just_after_being_handed_to_a_waiter_is_replaced() -> None:
    release = asyncio.Event()

    async def gated(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            await release.wait()
            writer.write(answer(request[2]))
            await writer.drain()

    transport = LeanTransport(max_connections=1)
    handed = transport.pool.release

    def hand_over_then_break(conn: object, reusable: bool) -> None:
        handed(conn, reusable)  # type: ignore[arg-type]
        conn.transport.abort()  # type: ignore[attr-defined]  # a reset arriving before the waiter runs

    transport.pool.release = hand_over_then_break  # type: ignore[method-assign]
    async with serving(gated) as server, client(transport) as http:
        first = asyncio.create_task(http.post(server.url, content=b"one"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(http.post(server.url, content=b"two"))  # waits for the only place
        await asyncio.sleep(0.05)
        release.set()
        assert (await first).content == b"one"
        assert (await second).content == b"two"  # sent again on a new connection
        assert server.accepted == 2 and checked_out(transport) == 0


async def test_a_fresh_connection_closed_before_an_answer_is_not_retried() -> None:
    async def hangs_up(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    transport = LeanTransport(max_connections=2)
    async with serving(hangs_up) as server, client(transport) as http:
        error = await failure(http.post(server.url, content=b"x"), httpx.RemoteProtocolError)
        assert "without sending a response" in str(error)
        assert server.accepted == 1 and transport.connections == 0


# ---- errors ----------------------------------------------------------------------------------------------


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_bodies_cut_short_and_resets_are_errors() -> None:
    async def broken(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        path = request[0].split()[1]
        if path == b"/short-length":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        elif path == b"/short-chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(0.05)
        if path == b"/reset":
            rst(writer)

    transport = LeanTransport(max_connections=2)
    async with serving(broken) as server, client(transport) as http:
        for path in ("/short-length", "/short-chunked"):
            error = await failure(http.get(server.url + path), httpx.RemoteProtocolError)
            assert "before the end of the response body" in str(error)
        await failure(http.get(f"{server.url}/reset"), httpx.RemoteProtocolError, httpx.ReadError)
        async with http.stream("GET", f"{server.url}/reset") as response:  # mid-stream too
            await failure(response.aread(), httpx.RemoteProtocolError, httpx.ReadError)
        assert transport.connections == 0


async def test_connect_refused_and_unknown_host_are_connect_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = LeanTransport(max_connections=2)
    async with client(transport) as http:
        error = await failure(http.get(f"http://127.0.0.1:{port}/"), httpx.ConnectError)
        assert f"127.0.0.1:{port}" in str(error)
        await failure(http.get("http://does-not-exist.invalid/"), httpx.ConnectError)
        assert transport.connections == 0


async def silent(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)  # reads nothing, answers nothing


async def test_read_and_write_timeouts() -> None:
    transport = LeanTransport(max_connections=2)
    async with serving(silent) as server, client(transport) as http:
        await failure(http.get(server.url, timeout=httpx.Timeout(5, read=0.2)), httpx.ReadTimeout)
        body = b"x" * (64 * 1024 * 1024)  # more than the socket buffers hold
        await failure(http.post(server.url, content=body, timeout=httpx.Timeout(5, write=0.3)), httpx.WriteTimeout)
        with pytest.raises(TimeoutError):  # an outer deadline, as the clients set, cancels it as well
            async with asyncio.timeout(0.2):
                await http.get(server.url)
        assert transport.connections == 0


async def test_a_reset_while_sending_is_an_error_and_a_silent_tls_handshake_a_connect_timeout() -> None:
    async def resets(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        rst(writer)

    transport = LeanTransport(max_connections=2)
    async with serving(resets) as server, client(transport) as http:
        await failure(http.post(server.url, content=b"x" * (64 * 1024 * 1024)),
                      httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError)
    assert transport.connections == 0
    transport = LeanTransport(max_connections=2)
    async with serving(silent) as server, client(transport) as http:  # TCP accepted, no TLS ever
        await failure(http.get(f"https://127.0.0.1:{server.port}", timeout=httpx.Timeout(5, connect=0.2)),
                      httpx.ConnectTimeout)
    assert transport.connections == 0


async def test_malformed_responses_are_protocol_errors() -> None:
    async def garbage(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        path = request[0].split()[1]
        writer.write({b"/status": b"HTTP/1.1 OK\r\n\r\n", b"/nonsense": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
                      b"/header": b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
                      b"/length": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nab",
                      b"/101": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
                      }[path])
        await writer.drain()
        await asyncio.sleep(1)

    transport = LeanTransport(max_connections=2)
    async with serving(garbage) as server, client(transport) as http:
        for path in ("/status", "/nonsense", "/header", "/length", "/101"):
            await failure(http.get(server.url + path), httpx.RemoteProtocolError)
        assert transport.connections == 0


async def test_response_heads_beyond_the_caps_are_refused_and_their_connection_dropped() -> None:
    """Too many headers, too many header bytes, or one header line without end: a clear error, not a buffer
    that grows for ever; a head just inside the caps is read as usual."""
    fill = b"x" * 1000

    async def heads(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            path = request[0].split()[1]
            if path == b"/count":
                writer.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-%d: 1\r\n" % i for i in range(101)) + b"\r\n")
            elif path == b"/bytes":
                writer.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-%d: %s\r\n" % (i, fill) for i in range(70)))
            elif path == b"/endless":
                writer.write(b"HTTP/1.1 200 OK\r\nx-endless: ")
                for _ in range(200):  # 200 KiB and counting, never a line end
                    writer.write(b"y" * 1024)
                    await writer.drain()
            else:
                headers = b"".join(b"x-%d: %s\r\n" % (i, fill) for i in range(60))  # ~60 KiB in 61 headers
                writer.write(b"HTTP/1.1 200 OK\r\n%scontent-length: 2\r\n\r\nok" % headers)
            await writer.drain()
        await asyncio.sleep(1)

    transport = LeanTransport(max_connections=2)
    async with serving(heads) as server, client(transport) as http:
        for path in ("/count", "/bytes", "/endless"):
            error = await failure(http.get(server.url + path), httpx.RemoteProtocolError)
            assert "response head is too large" in str(error) and "100 headers" in str(error)
            assert transport.connections == 0
        response = await http.get(server.url + "/fits")
        assert response.content == b"ok" and len(response.headers) == 61


async def test_a_line_break_in_a_header_is_refused_before_sending() -> None:
    transport = LeanTransport(max_connections=2)
    async with serving() as server, client(transport) as http:
        request = http.build_request("GET", server.url)
        request.headers["x-evil"] = "a"
        request.headers._list[-1] = (b"x-evil", b"x-evil", b"a\r\nx-injected: 1")
        await failure(http.send(request), httpx.LocalProtocolError)
        assert server.accepted == 0


# ---- https -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA and a server certificate it signed for DNS:localhost, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cfai test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return folder


def server_context(folder: Path, names: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    return context


async def test_https_verifies_the_certificate(certificates: Path) -> None:
    names: list[str] = []
    async with serving(tls=server_context(certificates, names)) as server:
        https = f"https://localhost:{server.port}"
        async with client(LeanTransport(max_connections=2)) as http:  # certifi's CAs: ours is unknown
            error = await failure(http.get(https), httpx.ConnectError)
            assert "CERTIFICATE_VERIFY_FAILED" in str(error)
        trusted = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
        transport = LeanTransport(max_connections=2, verify=trusted)
        async with client(transport) as http:
            for _ in range(3):
                response = await http.post(f"{https}/tls", content=b"secret")
                assert response.content == b"/tls|secret"
            assert server.accepted == 1 and names[-1] == "localhost"  # kept alive (the refused one never got in); SNI
            # The certificate names localhost, not 127.0.0.1: the host name is checked too.
            error = await failure(http.get(f"https://127.0.0.1:{server.port}"), httpx.ConnectError)
            assert "CERTIFICATE_VERIFY_FAILED" in str(error) or "match" in str(error)
        async with client(LeanTransport(max_connections=2, verify=False)) as http:  # verification off, on request
            assert (await http.get(f"https://127.0.0.1:{server.port}/any")).content == b"/any|"


# ---- where the transport is used -------------------------------------------------------------------------


def test_the_factory_steps_aside_when_a_proxy_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    assert not proxies_configured()
    assert isinstance(lean_transport(7), LeanTransport) and lean_transport(7).max_connections == 7  # type: ignore[union-attr]
    for name in ("HTTPS_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://proxy.example:3128")
        assert proxies_configured() and lean_transport(7) is None
        monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "*")
    assert isinstance(lean_transport(7), LeanTransport)


async def test_upstream_clients_use_it_unless_turned_off_or_given_a_transport(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    (tmp_path / "config.toml").write_text(
        '[upstreams.groq]\ntype = "openai"\nbase_url = "https://api.groq.com/openai/v1"\napi_key = "gsk_x"\n')
    settings = load_settings({"account_id": "0123abcd", "api_token": "t", "max_connections": 33},
                             environ={"CFAI_HOME": str(tmp_path)})
    assert settings.fast_http is True

    def transports(ctx: object) -> list[httpx.AsyncBaseTransport]:
        return [lane.provider._transport for lane in ctx.router.lanes if lane.provider is not None]  # type: ignore[attr-defined]

    async with open_context(settings) as ctx:
        used = transports(ctx)
        assert len(used) == 2 and all(isinstance(t, LeanTransport) and t.max_connections == 33 for t in used)
    async with open_context(replace(settings, fast_http=False)) as ctx:
        assert not any(isinstance(t, LeanTransport) for t in transports(ctx))
    given = httpx.MockTransport(lambda request: httpx.Response(200))
    async with open_context(settings, transport=given) as ctx:  # wrapped only to read a closed stream's tail
        assert all(isinstance(t, Draining) and t.inner is given for t in transports(ctx))
    in_process = httpx.ASGITransport(app=create_emulator_app())  # `--offline`: answers in memory, nothing to drain
    async with open_context(settings, transport=in_process) as ctx:
        assert all(t is in_process for t in transports(ctx))
    (tmp_path / "config.toml").write_text("fast_http = false\n")
    assert load_settings({}, environ={"CFAI_HOME": str(tmp_path)}).fast_http is False


async def test_with_a_proxy_configured_requests_go_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The factory's httpx fallback honours HTTP_PROXY: the proxy gets the absolute URL, the answer comes back."""
    from cfai_cli.upstream.network import choose_transport
    from cfai_cli.upstream.workers import WorkersAIClient

    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        seen.append(head.split(b"\r\n")[0])
        body = b'{"success":true,"result":{"response":"via proxy"},"errors":[],"messages":[]}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    assert not isinstance(choose_transport(None), LeanTransport)
    client = WorkersAIClient(account_id="0123456789abcdef0123456789abcdef", api_token="t",
                             api_base="http://upstream.invalid/client/v4", timeout=5)
    try:
        assert await client.run("@cf/x/y", {"prompt": "hi"}) == {"response": "via proxy"}
        assert seen == [b"POST http://upstream.invalid/client/v4/accounts/0123456789abcdef0123456789abcdef"
                        b"/ai/run/@cf/x/y HTTP/1.1"]
    finally:
        await client.aclose()
        server.close()
