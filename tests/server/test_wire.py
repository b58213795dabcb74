"""What the proxy accepts on the wire, in one process: content types, UTF-8 JSON, loopback names without keys,
the body deadline, and long model ids. (Over real TCP: tests/reliability/test_wire_tcp.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.openai_schema import validate

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
JSON_ROUTES = {
    "/v1/chat/completions": CHAT,
    "/v1/responses": {"model": "gpt-4o-mini", "input": "hi"},
    "/v1/completions": {"model": "gpt-4o-mini", "prompt": "hi"},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/v1/images/generations": {"model": "dall-e-3", "prompt": "a fox"},
    "/v1/audio/speech": {"model": "tts-1", "input": "hi", "voice": "alloy"},
    "/v1/tokenize": {"model": "gpt-4o-mini", "input": "hi"},
    "/chat/completions": CHAT,
}
MULTIPART_ROUTES = ["/v1/audio/transcriptions", "/v1/audio/translations", "/v1/images/edits"]


@asynccontextmanager
async def offline(settings: Settings, *, no_auth: bool = False, base_url: str = "http://proxy.test",
                  **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The proxy on the built-in emulator (every model answers), with a key unless `no_auth`."""
    settings = replace(settings, **changes).as_offline()
    headers = {}
    if not no_auth:
        key, _ = KeyStore(settings.database).create("wire")
        headers["Authorization"] = f"Bearer {key}"
    app = create_app(settings, no_auth=no_auth)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url, headers=headers) as client:
        yield client


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    validate(response.json(), "ErrorResponse")
    error: dict[str, Any] = response.json()["error"]
    assert code is None or error["code"] == code, error
    return error


# ---- content types -------------------------------------------------------------------------------------------


NOT_JSON = [None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x", "application/octet-stream", "application/jsonx", "text/json",
            "application/+json", "application/json; charset=utf-16", "application/json; charset=latin-1"]


@pytest.mark.parametrize("path", sorted(JSON_ROUTES))
async def test_json_routes_refuse_bodies_not_declared_json(settings: Settings, path: str) -> None:
    """Browsers post text/plain, forms and header-less bodies cross-site without a preflight: a 415 for all."""
    raw = json.dumps(JSON_ROUTES[path]).encode()
    async with offline(settings) as client:
        for content_type in NOT_JSON:
            headers = {"content-type": content_type} if content_type else {}
            response = await client.post(path, content=raw, headers=headers)  # bytes: httpx adds no type
            error = error_of(response, 415, "unsupported_media_type")
            if "charset" not in (content_type or ""):
                assert "-H 'Content-Type: application/json'" in error["message"], error


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON;Charset=\"UTF-8\"", "application/json;charset=utf8",
                                          "application/vnd.api+json", "application/merge-patch+json; charset=utf-8"])
async def test_json_content_types_are_accepted(settings: Settings, content_type: str) -> None:
    async with offline(settings) as client:
        for path, body in JSON_ROUTES.items():
            response = await client.post(path, content=json.dumps(body).encode(),
                                         headers={"content-type": content_type})
            assert response.status_code == 200, (path, response.text)


async def test_multipart_routes_refuse_other_content_types(settings: Settings) -> None:
    async with offline(settings) as client:
        for path in MULTIPART_ROUTES:
            error_of(await client.post(path, json={"model": "whisper-1"}), 415, "unsupported_media_type")
            error_of(await client.post(path, content=b"model=whisper-1",
                                       headers={"content-type": "application/x-www-form-urlencoded"}), 415)
            error_of(await client.post(path, content=b"x", headers={"content-type": "text/plain"}), 415)
            error_of(await client.post(path, content=b"x"), 415)


# ---- JSON is UTF-8 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
async def test_wide_encodings_are_refused_never_guessed(settings: Settings, encoding: str) -> None:
    """json.loads(bytes) would decode all of these; the proxy must not (with or without a BOM)."""
    async with offline(settings) as client:
        for path in ("/v1/chat/completions", "/v1/embeddings"):
            raw = json.dumps(JSON_ROUTES[path]).encode(encoding)
            response = await client.post(path, content=raw, headers={"content-type": "application/json"})
            error = error_of(response, 400, "invalid_json")
            assert "must be UTF-8" in error["message"]


DEEP = "[" * 100_000 + "]" * 100_000  # deeper than orjson's limit (1,024) and Python's recursion limit


async def test_json_nested_too_deeply_is_bad_input_not_a_failure(settings: Settings) -> None:
    """A body, or a tool call's arguments in it, nested past every parser's limit is the client's mistake: a 400 (or
    the arguments kept as text), never a 500 from a RecursionError that escaped `except ValueError`."""
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with offline(settings) as client:
        raw = json.dumps(chat)[:-1] + ', "metadata": ' + DEEP + "}"
        response = await client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert "nested too deeply" in error_of(response, 400, "invalid_json")["message"]
        messages = [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": DEEP}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "done"}]
        response = await client.post("/v1/chat/completions", json={**chat, "messages": messages})
        assert response.status_code == 200, response.text
        anthropic = await client.post("/v1/messages", content='{"model": "claude-sonnet-4-5", "x": ' + DEEP + "}",
                                      headers={"content-type": "application/json"})
        assert anthropic.status_code == 400 and anthropic.json()["type"] == "error", anthropic.text
        assert anthropic.json()["error"]["type"] == "invalid_request_error"


async def test_invalid_utf8_is_refused_and_a_utf8_bom_is_accepted(settings: Settings) -> None:
    json_type = {"content-type": "application/json"}
    async with offline(settings) as client:
        bad = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "caf\xe9"}]}'
        error = error_of(await client.post("/v1/chat/completions", content=bad, headers=json_type), 400, "invalid_json")
        assert "must be UTF-8" in error["message"]
        bom = b"\xef\xbb\xbf" + json.dumps(CHAT).encode()
        assert (await client.post("/v1/chat/completions", content=bom, headers=json_type)).status_code == 200


# ---- without keys: loopback names only -----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "localhost:3000", "LOCALHOST:3000", "127.0.0.1", "127.0.0.1:3000",
                                  "127.3.2.1:80", "[::1]", "[::1]:3000"])
async def test_no_auth_answers_loopback_names(settings: Settings, host: str) -> None:
    async with offline(settings, no_auth=True) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"host": host})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:3000", "127.0.0.1.nip.io", "localhost.evil.example",
                                  "0.0.0.0:3000", "[::ffff:7f00:1]", "192.168.1.10:3000", "::1", "", "[::1]x"])
async def test_no_auth_refuses_other_host_names(settings: Settings, host: str) -> None:
    """DNS rebinding: the browser sends the attacker's name in Host. 403, before anything else happens."""
    async with offline(settings, no_auth=True) as client:
        for path in ("/v1/chat/completions", "/v1/models", "/health"):
            request = client.build_request("POST" if "chat" in path else "GET", path,
                                           json=CHAT if "chat" in path else None, headers={"host": host})
            error_of(await client.send(request), 403, "host_not_allowed")


async def test_no_auth_refuses_two_host_headers(settings: Settings) -> None:
    async with offline(settings, no_auth=True, base_url="http://127.0.0.1") as client:
        request = client.build_request("GET", "/v1/models")
        request.headers = httpx.Headers([("host", "127.0.0.1"), ("host", "evil.example")])
        error_of(await client.send(request), 403, "host_not_allowed")


async def test_no_auth_refuses_pages_of_other_sites(settings: Settings) -> None:
    async with offline(settings, no_auth=True, base_url="http://127.0.0.1:3000",
                       cors_origins="https://app.example") as client:
        for origin in ("https://evil.example", "null", "http://127.0.0.1.evil.example"):
            form = await client.post("/v1/chat/completions", json=CHAT, headers={"origin": origin})
            error_of(form, 403, "origin_not_allowed")
        for origin in ("http://127.0.0.1:3000", "http://localhost:5173", "https://app.example"):
            assert (await client.post("/v1/chat/completions", json=CHAT, headers={"origin": origin})).status_code \
                == 200


async def test_with_keys_any_host_name_is_served(settings: Settings) -> None:
    async with offline(settings) as client:
        response = await client.post("/v1/chat/completions", json=CHAT,
                                     headers={"host": "gateway.example", "origin": "https://evil.example"})
        assert response.status_code == 200


# ---- the body deadline ---------------------------------------------------------------------------------------


async def test_a_slow_body_gets_a_408_and_frees_its_concurrency_slot(settings: Settings) -> None:
    released = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"model": "gpt-4o-mini", '
        await released.wait()  # the rest never comes in time
        yield b'"messages": []}'

    async with offline(settings, body_timeout=0.5, max_concurrency=1) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        slow = asyncio.create_task(client.post("/v1/chat/completions", content=trickle(),
                                               headers={"content-type": "application/json"}))
        await asyncio.sleep(0.2)
        busy = await client.post("/v1/chat/completions", json=CHAT)
        error_of(busy, 503, "overloaded")  # the slow upload holds the only slot...
        timed_out = await asyncio.wait_for(slow, 5)
        assert 0.5 <= loop.time() - started < 1.5  # at the deadline (a sweep every body_timeout / 8)
        released.set()
        error = error_of(timed_out, 408, "request_timeout")
        assert "0.5 s" in error["message"]
        assert timed_out.headers["connection"] == "close"
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # ...until its 408


async def test_the_deadline_holds_while_auth_reads_the_body_for_a_model_restricted_key(settings: Settings) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"model": "gpt-4o-mini", '
        await asyncio.sleep(30)
        yield b"}"

    async with offline(settings, body_timeout=0.3) as client:
        key, _ = KeyStore(settings.database).create("models", KeyPolicy(models=("gpt-4o*",)))
        response = await asyncio.wait_for(client.post(
            "/v1/chat/completions", content=trickle(),
            headers={"content-type": "application/json", "authorization": f"Bearer {key}"}), 5)
    error_of(response, 408, "request_timeout")


async def test_an_early_answer_closes_the_connection_and_a_complete_body_does_not(settings: Settings) -> None:
    async with offline(settings, max_json_mb=0.001) as client:
        too_big = await client.post("/v1/chat/completions", content=b"{" + b" " * 4096 + b"}",
                                    headers={"content-type": "application/json", "content-length": "4098"})
        error_of(too_big, 413, "request_too_large")
        assert too_big.headers["connection"] == "close"
        ok = await client.post("/v1/chat/completions", json=CHAT)
        assert ok.status_code == 200 and "connection" not in ok.headers


# ---- model ids -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["@cf/meta/" + "a" * 250, "@cf/" + "a" * 70_000 + "/b", "x" * 300])
async def test_model_ids_over_256_characters_are_a_400(settings: Settings, model: str) -> None:
    async with offline(settings) as client:
        for path, body in JSON_ROUTES.items():
            if path in ("/v1/tokenize",):
                continue  # counted locally: no URL is ever built from the name
            response = await client.post(path, json={**body, "model": model})
            error = error_of(response, 400, "invalid_model")
            assert error["param"] == "model" and len(error["message"]) < 600
