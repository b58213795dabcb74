"""Every failure on the Anthropic routes is an Anthropic error body with Anthropic's status, and the official
SDK raises its typed exception for it: bad JSON, validation, auth, scope and model policy, rate limits, a body
too large, unknown routes, upstream failures before the first byte, and `event: error` after it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import anthropic
import httpx
import pytest

from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyPolicy, KeyStore
from tests.fake_workers import FakeWorkers, error_envelope, fixed, sse, sse_response
from tests.server.anthropic_client import claude_on, raw_on

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
HI = [{"role": "user", "content": "hi"}]


def anthropic_body(reply: httpx.Response, kind: str) -> str:
    """The error's message, after checking the body is Anthropic's and nothing else."""
    body = reply.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind, body
    return str(body["error"]["message"])


def key_with(settings: Settings, **policy: Any) -> str:
    return KeyStore(settings.database).create("limited", KeyPolicy(**policy))[0]


async def test_bad_json_and_bad_fields_are_400s(settings: Settings, api_key: str) -> None:
    async with raw_on(settings.as_offline(), api_key) as raw:
        broken = await raw.post("/v1/messages", content=b'{"model": ', headers={"content-type": "application/json"})
        assert broken.status_code == 400
        anthropic_body(broken, "invalid_request_error")
        no_max = await raw.post("/v1/messages", json={"model": "claude-sonnet-4-5", "messages": HI})
        assert no_max.status_code == 400
        assert "max_tokens" in anthropic_body(no_max, "invalid_request_error")
        doc = await raw.post("/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}]})
        assert doc.status_code == 400 and "PDF" in anthropic_body(doc, "invalid_request_error")
    async with claude_on(settings.as_offline(), api_key) as client:
        with pytest.raises(anthropic.BadRequestError) as bad:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=0, messages=HI)
    assert bad.value.status_code == 400 and "max_tokens" in bad.value.message


async def test_authentication(settings: Settings, api_key: str) -> None:
    async with raw_on(settings.as_offline(), None) as raw:
        missing = await raw.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": HI})
        assert missing.status_code == 401 and "x-api-key" in anthropic_body(missing, "authentication_error")
    for bearer in (False, True):
        async with claude_on(settings.as_offline(), "sk-wrong", bearer=bearer) as client:
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=HI)
        assert refused.value.status_code == 401
        assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_scope_and_model_policy_are_permission_errors(settings: Settings) -> None:
    embeddings_only = key_with(settings, scopes=frozenset({"embeddings"}))
    qwen_only = key_with(settings, models=("@cf/qwen/*",))
    async with claude_on(settings.as_offline(), embeddings_only) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as scope:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=HI)
    assert scope.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    async with claude_on(settings.as_offline(), qwen_only) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as model:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=HI)
        with pytest.raises(anthropic.PermissionDeniedError):
            await client.messages.count_tokens(model="claude-sonnet-4-5", messages=HI)
        with pytest.raises(anthropic.PermissionDeniedError):
            async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=5, messages=HI) as events:
                await events.get_final_message()
    assert "claude-sonnet-4-5" in model.value.message


async def test_rate_limit_is_429_with_retry_after(settings: Settings) -> None:
    one_a_minute = key_with(settings, rpm=1)
    async with claude_on(settings.as_offline(), one_a_minute) as client:
        await client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as limited:
            await client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=HI)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(limited.value.response.headers["retry-after"]) >= 1


async def test_body_too_large_is_413(settings: Settings, api_key: str) -> None:
    small = replace(settings, max_json_mb=0.01)
    async with claude_on(small.as_offline(), api_key) as client:
        with pytest.raises(anthropic.APIStatusError) as too_big:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=5,
                                         messages=[{"role": "user", "content": "x" * 20_000}])
    assert too_big.value.status_code == 413
    assert too_big.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]


async def test_unknown_routes_and_methods(settings: Settings, api_key: str) -> None:
    async with raw_on(settings.as_offline(), api_key) as raw:
        unknown = await raw.post("/v1/messages/batches", json={})
        assert unknown.status_code == 404 and "/v1/messages/batches" in anthropic_body(unknown, "not_found_error")
        wrong_method = await raw.get("/v1/messages")
        assert wrong_method.status_code == 405
        anthropic_body(wrong_method, "invalid_request_error")
        missing_model = await raw.get("/v1/models/claude-nonsense-9")
        assert missing_model.status_code == 404
        anthropic_body(missing_model, "not_found_error")
        del raw.headers["anthropic-version"]  # an OpenAI client elsewhere still gets OpenAI's body
        openai = await raw.post("/v1/nope", json={})
        assert openai.status_code == 404 and set(openai.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(("upstream", "status", "kind", "error"), [
    (fixed(500, error_envelope(3043, "Internal server error")), 502, "api_error", anthropic.InternalServerError),
    (fixed(429, error_envelope(3040, "Capacity temporarily exceeded, please try again."),
           headers={"Retry-After": "0"}), 529, "overloaded_error", anthropic.OverloadedError),
    (fixed(400, error_envelope(5006, "Error: oneOf at '/' not met")), 400, "invalid_request_error",
     anthropic.BadRequestError),
])
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_failures_before_the_first_byte(settings: Settings, api_key: str, fake: FakeWorkers,
                                                       upstream: Any, status: int, kind: str,
                                                       error: type[anthropic.APIStatusError], stream: bool) -> None:
    fake.models[LLAMA] = upstream
    quick = replace(settings, max_retries=0)
    async with claude_on(quick, api_key, transport=fake.transport()) as client:
        with pytest.raises(error) as failed:
            if stream:
                async with client.messages.stream(model=LLAMA, max_tokens=5, messages=HI) as events:
                    await events.get_final_message()
            else:
                await client.messages.create(model=LLAMA, max_tokens=5, messages=HI)
    assert failed.value.status_code == status
    assert failed.value.body["error"]["type"] == kind  # type: ignore[index]


def breaks_mid_stream(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    return sse_response(sse({"response": "Half an"}, {"response": " answer"},
                            {"errors": [{"code": 3043, "message": "Internal error"}]}, done=False))


async def test_failure_after_the_first_byte_is_an_error_event(settings: Settings, api_key: str,
                                                              fake: FakeWorkers) -> None:
    fake.models[LLAMA] = breaks_mid_stream
    async with raw_on(settings, api_key, transport=fake.transport()) as raw:
        reply = await raw.post("/v1/messages", json={"model": LLAMA, "max_tokens": 50, "stream": True,
                                                     "messages": HI})
    assert reply.status_code == 200
    assert "event: message_start" in reply.text and "Half an" in reply.text
    assert "message_stop" not in reply.text and "[DONE]" not in reply.text
    last = reply.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\ndata: ") and '"type":"api_error"' in last.replace(" ", "")
    async with claude_on(settings, api_key, transport=fake.transport()) as client:
        with pytest.raises(anthropic.APIStatusError) as failed:
            async with client.messages.stream(model=LLAMA, max_tokens=50, messages=HI) as events:
                await events.get_final_message()
    assert "3043" in failed.value.message


async def test_the_upstream_is_closed_once_a_stop_sequence_hits(settings: Settings, api_key: str,
                                                                fake: FakeWorkers) -> None:
    """The chat stream under a message is not read past a stop sequence: the upstream's later events are never
    waited for (the transport may read a closed body's tail for a moment, for the connection's sake), and
    nothing after the sequence is sent."""
    pulled: list[int] = []

    def upstream(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        async def events() -> Any:
            for i, word in enumerate(["one", " two", " STOP", *[f" w{n}" for n in range(500)]]):
                pulled.append(i)
                yield sse({"response": word}, done=False)
                if i > 2:
                    await asyncio.sleep(0.01)  # a model still generating (5 s in all)
            yield sse({"response": "", "usage": {"prompt_tokens": 3, "completion_tokens": 503}})

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events())

    fake.models[LLAMA] = upstream
    async with raw_on(settings, api_key, transport=fake.transport()) as raw:
        reply = await raw.post("/v1/messages", json={"model": LLAMA, "max_tokens": 900, "stream": True,
                                                     "stop_sequences": ["STOP"], "messages": HI})
    frames = reply.text.strip().split("\n\n")
    assert frames[-1].startswith("event: message_stop")
    assert '"stop_sequence":"STOP"' in frames[-2].replace(" ", "") and " w0" not in reply.text
    assert len(pulled) < 100  # closed at the hit, not read to the end
    usage = json.loads(frames[-2].split("data: ", 1)[1])["usage"]
    assert usage["output_tokens"] > 0  # estimated: Workers AI's own count comes at the end, never read
