"""The proxy end to end in one process: auth, routes, error bodies, upstream failure mapping, streams.

Every emitted body is checked against the official OpenAI schemas (tests/openai_schema.py).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cfai_cli.errors import ConfigError
from cfai_cli.server.app import check_bind
from cfai_cli.store.keys import KeyStore
from tests.fake_workers import (
    FakeWorkers,
    chat_dialect_tool_call,
    error_envelope,
    fixed,
    native_text,
    sse,
    sse_response,
)
from tests.openai_schema import validate, validate_sse_chat_stream

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
GLM = "@cf/zai-org/glm-4.7-flash"


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": LLAMA, "messages": [{"role": "user", "content": "Say hello"}], **extra}


def assert_openai_error(response: httpx.Response, status: int, *, code: str | None = None,
                        param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    validate(body, "ErrorResponse")
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    assert "Traceback" not in response.text
    return body["error"]


# ---- auth ------------------------------------------------------------------------------------------


async def test_requests_without_a_key_are_refused(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("hi")
    async with proxy(key=None) as client:
        assert_openai_error(await client.post("/v1/chat/completions", json=chat_body()), 401, code="missing_api_key")
        assert_openai_error(await client.get("/v1/models"), 401)
        wrong = await client.get("/v1/models", headers={"Authorization": "Bearer sk-proj-not-a-real-key"})
        assert_openai_error(wrong, 401, code="invalid_api_key")
        # Keys never count in a query string.
        assert (await client.get("/v1/models?api_key=whatever")).status_code == 401
        health = await client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
    assert fake.calls == []


async def test_alternative_key_headers_and_revocation(proxy, fake: FakeWorkers, settings, api_key: str) -> None:
    async with proxy(key=None) as client:
        for header in ("api-key", "x-api-key"):
            assert (await client.get("/v1/models", headers={header: api_key})).status_code == 200
        store = KeyStore(settings.database)
        (record,) = store.list()
        assert store.revoke(record.id)
        revoked = await client.get("/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        assert_openai_error(revoked, 401, code="invalid_api_key")


async def test_upstream_gets_the_cloudflare_token_never_the_proxy_key(proxy, fake: FakeWorkers, api_key) -> None:
    fake.models[LLAMA] = native_text("hi")
    async with proxy() as client:
        assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    (headers,) = fake.headers_seen
    assert headers["authorization"] == "Bearer cf-secret-token-value"
    assert api_key not in str(dict(headers))


def test_bind_rules(settings) -> None:
    keys = KeyStore(settings.database)
    with pytest.raises(ConfigError, match="loopback"):
        check_bind("0.0.0.0", no_auth=True, keys=keys)
    with pytest.raises(ConfigError, match="cfai keygen"):
        check_bind("127.0.0.1", no_auth=False, keys=keys)
    check_bind("127.0.0.1", no_auth=True, keys=keys)
    check_bind("::1", no_auth=True, keys=keys)
    keys.create("k")
    check_bind("0.0.0.0", no_auth=False, keys=keys)


async def test_no_auth_app_serves_without_a_key(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("open")
    async with proxy(key=None, no_auth=True) as client:
        response = await client.post("/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "open"


# ---- routes and bad input ------------------------------------------------------------------------------


async def test_unknown_route_wrong_method_and_bad_bodies(proxy, settings) -> None:
    async with proxy() as client:
        assert_openai_error(await client.get("/v1/nothing-here"), 404, code="not_found")
        assert_openai_error(await client.get("/v1/chat/completions"), 405)
        json_type = {"content-type": "application/json"}
        assert_openai_error(await client.post("/v1/chat/completions", content=b"{not json", headers=json_type), 400,
                            code="invalid_json")
        for body in (b"null", b"[]", b'"x"', b"3"):
            assert_openai_error(await client.post("/v1/chat/completions", content=body, headers=json_type), 400,
                                code="invalid_json")
        assert_openai_error(await client.post("/v1/chat/completions", content=b"\xff\xfe{}", headers=json_type), 400)
        assert_openai_error(await client.post("/v1/chat/completions", content=b"[" * 100_000 + b"]" * 100_000,
                                              headers=json_type), 400)
        missing = await client.post("/v1/chat/completions", json={"model": LLAMA})
        assert_openai_error(missing, 400, param="messages")
        wrong = await client.post("/v1/chat/completions", json=chat_body(temperature="hot"))
        assert_openai_error(wrong, 400, param="temperature")
        role = await client.post("/v1/chat/completions", json={"model": LLAMA, "messages": [{"role": "robot"}]})
        assert_openai_error(role, 400, param="messages[0].role")
        bad_id = await client.post("/v1/chat/completions", json=chat_body(model="@cf/../../accounts/x"))
        assert_openai_error(bad_id, 400, param="model")
        big = b'{"model": "x", "messages": [], "pad": "' + b"a" * (int(settings.max_json_mb * 1024 * 1024)) + b'"}'
        assert_openai_error(await client.post("/v1/chat/completions", content=big, headers=json_type), 413)


async def test_unknown_alias_and_unknown_upstream_model_are_404(proxy, fake: FakeWorkers) -> None:
    async with proxy() as client:
        alias = await client.post("/v1/chat/completions", json=chat_body(model="gpt-99"))
        assert_openai_error(alias, 404, code="model_not_found", param="model")
        upstream = await client.post("/v1/chat/completions", json=chat_body(model="@cf/meta/nope"))
        error = assert_openai_error(upstream, 404, code="model_not_found")
        assert "5007" in error["message"]


async def test_models_list_and_retrieve(proxy) -> None:
    async with proxy() as client:
        listing = (await client.get("/v1/models")).json()
        validate(listing, "ListModelsResponse")
        ids = [m["id"] for m in listing["data"]]
        assert LLAMA in ids and "gpt-4" in ids  # an alias whose model is in the (fake) catalogue
        one = await client.get(f"/v1/models/{LLAMA}")
        validate(one.json(), "Model")
        assert one.json()["id"] == LLAMA
        alias = (await client.get("/models/gpt-4")).json()
        assert alias["id"] == "gpt-4"
        dated = (await client.get("/models/gpt-4-0613")).json()  # a dated name of the family
        assert dated["id"] == "gpt-4-0613"
        assert_openai_error(await client.get("/v1/models/@cf/meta/unknown-model"), 404, code="model_not_found")


# ---- chat ----------------------------------------------------------------------------------------------


async def test_chat_completion_is_spec_exact(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("Hello from Workers AI")
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=50, temperature=0.2))
    assert response.status_code == 200
    body = response.json()
    validate(body, "CreateChatCompletionResponse")
    assert body["choices"][0]["message"]["content"] == "Hello from Workers AI"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert response.headers["cache-control"] == "no-store"
    (_, sent), = fake.calls
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.2
    assert "model" not in sent and "stream" not in sent


async def test_stream_is_valid_sse_with_usage_chunk(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("one two three four")
    async with proxy() as client:
        response = await client.post("/v1/chat/completions",
                                     json=chat_body(stream=True, stream_options={"include_usage": True}))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = validate_sse_chat_stream(response.text)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "one two three four"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert all(c["usage"] is None for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1


async def test_streamed_tool_calls_from_a_chat_dialect_model(proxy, fake: FakeWorkers) -> None:
    fake.models[GLM] = chat_dialect_tool_call("get_weather", '{"city": "Paris"}')
    tools = [{"type": "function", "function": {"name": "get_weather",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}]
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(model=GLM, stream=True, tools=tools))
    chunks = validate_sse_chat_stream(response.text)
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    # The upstream's "chatcmpl-tool-1" id becomes an OpenAI-style call_ id.
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "get_weather"
    assert all("id" not in tc and "name" not in tc.get("function", {}) for tc in calls[1:])
    assert json.loads("".join(tc["function"].get("arguments", "") for tc in calls)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert reasoning == "Need the tool."
    (_, sent), = fake.calls
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["stream"] is True


async def test_n_choices_make_several_upstream_calls(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("same answer")
    async with proxy() as client:
        body = (await client.post("/v1/chat/completions", json=chat_body(n=3))).json()
        stream = await client.post("/v1/chat/completions", json=chat_body(n=2, stream=True))
    validate(body, "CreateChatCompletionResponse")
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    chunks = validate_sse_chat_stream(stream.text)
    finished = sorted(c["choices"][0]["index"] for c in chunks if c["choices"][0]["finish_reason"])
    assert finished == [0, 1]
    assert len(fake.calls) == 5


# ---- upstream failures -------------------------------------------------------------------------------------

UPSTREAM_FAILURES = [
    # (handler, proxy status, OpenAI code, text that must reach the user)
    (fixed(400, error_envelope(
        5006, "AiError: Bad input: Error: required properties at '/' are 'prompt' (ab12cd34-0000)")),
     400, None, "5006"),
    (fixed(200, error_envelope(5006, "AiError: Bad input (ab12cd34-0000)")), 400, None, "Bad input"),
    (fixed(401, error_envelope(10000, "Authentication error")), 502, "upstream_auth_error", "CLOUDFLARE_API_TOKEN"),
    (fixed(429, error_envelope(4006, "AiError: AiError: you have used up your daily free allocation of 10,000 "
                                     "neurons (ab12cd34-0000)")), 429, "insufficient_quota", "4006"),
    (fixed(429, error_envelope("3040", "Capacity temporarily exceeded, please try again."),
           headers={"Retry-After": "0"}), 429, "rate_limit_exceeded", "3040"),
    (fixed(502, b"<!DOCTYPE html><html><body>Bad gateway</body></html>", "text/html"), 502, None, "HTML"),
    (fixed(500, error_envelope(3043, "AiError: Internal server error (ab12cd34-0000)")), 502, None, "3043"),
    (fixed(200, b"{not json", "application/json"), 502, None, "not JSON"),
    (fixed(200, {"result": {}, "success": True, "errors": [], "messages": []}), 502, None, "empty"),
    (fixed(408, error_envelope(3046, "AiError: AiError: Request timeout (ab12cd34-0000)")), 504, "timeout", "3046"),
]


@pytest.mark.parametrize(("handler", "status", "code", "shown"), UPSTREAM_FAILURES)
async def test_upstream_failures_map_to_openai_errors(proxy, fake: FakeWorkers, handler, status, code, shown) -> None:
    fake.models[LLAMA] = handler
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body())
    error = assert_openai_error(response, status, code=code)
    assert shown in error["message"]
    assert "<html" not in response.text.lower()
    assert "cf-secret-token-value" not in response.text


async def test_quota_is_final_but_capacity_is_retried(proxy, fake: FakeWorkers) -> None:
    attempts: list[int] = []

    def flaky(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        attempts.append(1)
        if len(attempts) < 3:
            return httpx.Response(429, json=error_envelope(3040, "Capacity temporarily exceeded"))
        return native_text("finally")(request, body)

    fake.models[LLAMA] = flaky
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200 and len(attempts) == 3

    fake.models[LLAMA] = fixed(429, error_envelope(4006, "daily free allocation used up"))
    fake.calls.clear()
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 429 and len(fake.calls) == 1


async def test_rate_limit_passes_retry_after(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = fixed(429, error_envelope(3040, "Capacity temporarily exceeded"),
                               headers={"Retry-After": "30"})
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body())
    assert_openai_error(response, 429)
    assert response.headers["retry-after"] == "30"


async def test_connection_failure_is_502(proxy, fake: FakeWorkers) -> None:
    def refuse(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    fake.models[LLAMA] = refuse
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body())
    error = assert_openai_error(response, 502)
    assert "Could not reach Workers AI" in error["message"]
    assert len(fake.calls) == 3  # the first try and max_retries=2 more


BROKEN_STREAMS = [
    sse({"response": "partial"}, done=False),
    sse({"response": "partial"}, {"error": {"code": 3043, "message": "AiError: Internal server error"}}),
    sse({"response": "partial"}, "{not json"),
]


@pytest.mark.parametrize("body", BROKEN_STREAMS)
async def test_broken_streams_end_with_an_in_band_error_never_done(proxy, fake: FakeWorkers, body: bytes) -> None:
    fake.models[LLAMA] = lambda request, parsed: sse_response(body)
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.status_code == 200
    events = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    validate(last, "ErrorResponse")
    assert json.loads(events[0])["choices"][0]["delta"].get("content") in ("", "partial")


async def test_stream_errors_before_the_first_byte_are_plain_http_errors(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = fixed(400, error_envelope(5006, "AiError: Bad input"))
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert_openai_error(response, 400)


async def test_models_that_do_not_stream_are_replayed_as_a_stream(proxy, fake: FakeWorkers) -> None:
    gpt_oss = "@cf/openai/gpt-oss-120b"

    def quirk(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if body.get("stream"):
            return httpx.Response(200, json={"result": {}, "success": True, "errors": [], "messages": []})
        return httpx.Response(200, json={"result": {
            "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": gpt_oss,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Four.", "reasoning_content": "2+2"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}},
            "success": True, "errors": [], "messages": []})

    fake.models[gpt_oss] = quirk
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(model="gpt-5", stream=True))
    chunks = validate_sse_chat_stream(response.text)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Four."
    assert fake.calls[-1][1].get("stream") is None


async def test_any_model_answering_json_to_a_stream_request_is_still_streamed(proxy, fake: FakeWorkers) -> None:
    model = "@cf/qwen/qwq-32b"

    def json_always(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if body.get("stream"):  # the gpt-oss quirk, on a model cfai has no list entry for
            return httpx.Response(200, json={"result": {}, "success": True, "errors": [], "messages": []})
        return httpx.Response(200, json={"result": {"response": "<think>hmm</think>Answer.",
                                                    "usage": {"prompt_tokens": 4, "completion_tokens": 5}},
                                         "success": True, "errors": [], "messages": []})

    fake.models[model] = json_always
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(
            model=model, stream=True, stream_options={"include_usage": True}))
    chunks = validate_sse_chat_stream(response.text)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content", "") for d in deltas) == "Answer."
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "hmm"
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert [body.get("stream") for _, body in fake.calls] == [True, None]


async def test_strict_native_schema_gets_tool_history_in_the_older_form(proxy, fake: FakeWorkers) -> None:
    """Reference §2.5/§14.11: if OpenAI-style tool history is refused (5006), resend it as the old docs do."""

    def strict(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if any("tool_calls" in m or "tool_call_id" in m for m in body["messages"]):
            return httpx.Response(400, json=error_envelope(5006, "AiError: Bad input: Error: additional properties"))
        return native_text("It is sunny.")(request, body)

    fake.models[LLAMA] = strict
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
    ]
    async with proxy() as client:
        plain = await client.post("/v1/chat/completions", json=chat_body(messages=history))
        streamed = await client.post("/v1/chat/completions", json=chat_body(messages=history, stream=True))
    assert plain.json()["choices"][0]["message"]["content"] == "It is sunny."
    assert "It is sunny." in "".join(
        c["choices"][0]["delta"].get("content", "") for c in validate_sse_chat_stream(streamed.text))
    legacy = fake.calls[1][1]["messages"]
    assert legacy[1] == {"role": "assistant", "content": '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'}
    assert legacy[2] == {"role": "tool", "content": '{"sky": "clear"}'}


async def test_schema_errors_without_tool_history_are_not_resent(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = fixed(400, error_envelope(5006, "AiError: Bad input"))
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 400 and len(fake.calls) == 1
