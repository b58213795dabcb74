"""upstream.inprocess: the emulator reached in bytes (`--offline`'s network) against httpx.ASGITransport over the
same app: the same scope and messages handed to the app, the same status, headers and body back, the same
results through the Workers AI client; and no httpx imported on the way."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest

from cfai_cli.emulator import create_emulator_app
from cfai_cli.emulator.faults import KINDS
from cfai_cli.upstream.http11 import request_head
from cfai_cli.upstream.inprocess import InProcess
from cfai_cli.upstream.network import choose_transport
from cfai_cli.upstream.workers import WorkersAIClient

pytestmark = pytest.mark.anyio

ACCOUNT = "0123456789abcdef0123456789abcdef"
BASE = "http://offline.cfai.invalid/client/v4"
RUN = f"{BASE}/accounts/{ACCOUNT}/ai/run"
MODEL = "@cf/meta/llama-3.1-8b-instruct"
Message = MutableMapping[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """The emulator, noting the scope and every message it receives."""

    def __init__(self) -> None:
        self.app = create_emulator_app()
        self.seen: list[Any] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        self.seen.append(copy.deepcopy(dict(scope)))

        async def noted() -> Message:
            message = await receive()
            self.seen.append(dict(message))
            return message

        await self.app(scope, noted, send)


def requests() -> list[httpx.Request]:
    chat = {"messages": [{"role": "user", "content": "Say héllo."}], "max_tokens": 16}
    head = {"Authorization": "Bearer t", "User-Agent": "cfai/test", "X-Twice": "a"}
    return [
        httpx.Request("POST", f"{RUN}/{MODEL}", json=chat, headers=head),
        httpx.Request("POST", f"{RUN}/{MODEL}", json={**chat, "stream": True}, headers=head),
        httpx.Request("POST", f"{RUN}/@cf/nobody/no-such-model", json=chat, headers=head),
        httpx.Request("POST", f"{RUN}/{MODEL}", content=b"{not json", headers=head),
        httpx.Request("POST", f"{RUN}/%40cf/meta/llama-3.1-8b-instruct", json=chat),
        httpx.Request("GET", f"{BASE}/accounts/{ACCOUNT}/ai/models/search?per_page=2&task=Text%20Generation"),
        httpx.Request("GET", "http://offline.cfai.invalid:8080/client/v4/user/tokens/verify",
                      headers=[("X-Twice", "a"), ("x-twice", "b")]),
        httpx.Request("HEAD", f"{BASE}/accounts/{ACCOUNT}/ai/models/search"),
        *(httpx.Request("POST", f"{RUN}/@cf/cfai/fault-{kind}", json={**chat, "stream": True}, headers=head)
          for kind in KINDS),
    ]


@pytest.mark.parametrize("index", range(len(requests())))
async def test_the_app_sees_and_answers_the_same_as_through_httpx(index: int) -> None:
    request = requests()[index]
    through_httpx, in_process = Recorder(), Recorder()
    response = await httpx.ASGITransport(app=through_httpx).handle_async_request(request)
    expected = (response.status_code, response.headers.raw, await response.aread())
    url = request.url
    lean = InProcess(in_process)
    answer = await lean.open((url.scheme, url.host, url.port or 80), request_head(request), request.content, None)
    got = (answer.exchange.status, answer.exchange.headers, await answer.read())
    await answer.aclose()
    assert got == expected
    assert in_process.seen == through_httpx.seen  # the scope, the body's two messages, the disconnect
    assert through_httpx.seen[0]["method"] == request.method and len(through_httpx.seen) >= 3


async def test_the_workers_client_gets_the_same_answers() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}

    async def results(transport: Any) -> tuple[Any, bytes, Any]:
        client = WorkersAIClient(account_id=ACCOUNT, api_token="t", api_base=BASE, timeout=5.0, transport=transport)
        try:
            whole = await client.run(MODEL, body)
            stream = await client.stream(MODEL, {**body, "stream": True})
            chunks = b"".join([chunk async for chunk in stream.chunks])
            await stream.aclose()
            search = await client.models_search({"per_page": 1})
            return whole, chunks, search
        finally:
            await client.aclose()

    lean = await results(InProcess(create_emulator_app()))
    assert lean == await results(httpx.ASGITransport(app=create_emulator_app()))
    assert "[offline]" in json.dumps(lean[0]) and b"data: [DONE]" in lean[1] and len(lean[2]) > 1


def test_httpx_built_calls_take_httpx_s_way_into_the_same_app() -> None:
    lean = InProcess(create_emulator_app())
    chosen = choose_transport(lean)
    assert isinstance(chosen, httpx.ASGITransport) and chosen.app is lean.app


def test_an_offline_answer_imports_no_httpx() -> None:
    code = """
import asyncio, sys
from cfai_cli.service.context import offline_transport
from cfai_cli.upstream.workers import WorkersAIClient

async def main():
    client = WorkersAIClient(account_id="0" * 32, api_token="t", api_base="http://offline.cfai.invalid/client/v4",
                             timeout=5.0, transport=offline_transport())
    body = {"messages": [{"role": "user", "content": "hi"}]}
    whole = await client.run("@cf/meta/llama-3.1-8b-instruct", body)
    stream = await client.stream("@cf/meta/llama-3.1-8b-instruct", {**body, "stream": True})
    text = b"".join([c async for c in stream.chunks])
    await stream.aclose()
    await client.aclose()
    print(bool(whole), b"[DONE]" in text, "httpx" in sys.modules)

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True", "False"], done.stderr
