"""POST /v1/responses, the stored-response routes and POST /v1/completions through the proxy, in process.

Every body is validated against the OpenAI schemas; upstream is the readable fake in tests/fake_workers.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.fake_workers import (
    FakeWorkers,
    chat_dialect_tool_call,
    error_envelope,
    fixed,
    native_text,
    native_tool_call,
    sse,
    sse_response,
)
from tests.openai_schema import errors, validate, validate_sse_responses_stream

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
GLM = "@cf/zai-org/glm-4.7-flash"
TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


async def test_plain_response(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("Hello there")
    async with proxy() as client:
        reply = await client.post("/v1/responses", json={"model": LLAMA, "input": "hi", "instructions": "Be kind.",
                                                          "max_output_tokens": 64, "metadata": {"k": "v"}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    validate(body, "Response")
    assert body["id"].startswith("resp_") and body["status"] == "completed"
    assert body["output_text"] == "Hello there" and body["metadata"] == {"k": "v"}
    assert body["usage"]["input_tokens"] == 7 and body["usage"]["output_tokens"] == 2
    _, sent = fake.calls[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == 64


async def test_default_model_when_the_body_has_only_input(proxy, fake: FakeWorkers, settings) -> None:
    fake.models[settings.default_model] = native_text("ok")
    async with proxy() as client:
        reply = await client.post("/responses", json={"input": "hi"})
    assert reply.status_code == 200 and reply.json()["model"] == settings.default_model


async def test_tool_call_then_its_output(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_tool_call("get_weather", {"city": "Paris"})
    async with proxy() as client:
        first = (await client.post("/v1/responses", json={"model": LLAMA, "input": "Weather?", "tools": [TOOL]})).json()
        validate(first, "Response")
        call = first["output"][0]
        assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"city": "Paris"}
        fake.models[LLAMA] = native_text("Sunny.")
        second = (await client.post("/v1/responses", json={
            "model": LLAMA, "tools": [TOOL], "previous_response_id": first["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]})).json()
    assert second["output_text"] == "Sunny." and second["previous_response_id"] == first["id"]
    _, sent = fake.calls[-1]
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == call["call_id"]
    assert sent["messages"][2]["tool_call_id"] == call["call_id"]


async def test_stored_conversation_routes(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("Nice to meet you")
    async with proxy() as client:
        first = (await client.post("/v1/responses", json={"model": LLAMA, "input": "I am Ada"})).json()
        fake.models[LLAMA] = native_text("You are Ada")
        second = (await client.post("/v1/responses", json={"model": LLAMA, "input": "Who am I?",
                                                           "previous_response_id": first["id"]})).json()
        _, sent = fake.calls[-1]
        assert [m["content"] for m in sent["messages"]] == ["I am Ada", "Nice to meet you", "Who am I?"]

        got = await client.get(f"/v1/responses/{second['id']}")
        assert got.status_code == 200 and got.json() == second
        items = (await client.get(f"/v1/responses/{second['id']}/input_items")).json()
        validate(items, "ResponseItemList")
        assert [i["content"][0]["text"] for i in items["data"]] == ["Who am I?"] and items["has_more"] is False

        deleted = await client.delete(f"/v1/responses/{first['id']}")
        assert deleted.json() == {"id": first["id"], "object": "response", "deleted": True}
        for method, path in (("GET", f"/v1/responses/{first['id']}"), ("DELETE", f"/v1/responses/{first['id']}"),
                             ("GET", f"/v1/responses/{first['id']}/input_items")):
            missing = await client.request(method, path)
            assert missing.status_code == 404, path
            validate(missing.json(), "ErrorResponse")
        unknown = await client.post("/v1/responses", json={"model": LLAMA, "input": "x",
                                                            "previous_response_id": "resp_nope"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "previous_response_id"


async def test_input_items_paging(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("ok")
    messages = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    async with proxy() as client:
        rid = (await client.post("/v1/responses", json={"model": LLAMA, "input": messages})).json()["id"]
        page = (await client.get(f"/v1/responses/{rid}/input_items?limit=2&order=asc")).json()
        rest = (await client.get(f"/v1/responses/{rid}/input_items?order=asc&after={page['last_id']}")).json()
        newest = (await client.get(f"/v1/responses/{rid}/input_items?limit=1")).json()
        bad = await client.get(f"/v1/responses/{rid}/input_items?limit=0")
    text = [[i["content"][0]["text"] for i in p["data"]] for p in (page, rest, newest)]
    assert text == [["m0", "m1"], ["m2", "m3", "m4"], ["m4"]]
    assert page["has_more"] is True and rest["has_more"] is False
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


async def test_store_false_keeps_nothing(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("ok")
    async with proxy() as client:
        body = (await client.post("/v1/responses", json={"model": LLAMA, "input": "x", "store": False})).json()
        assert body["store"] is False
        assert (await client.get(f"/v1/responses/{body['id']}")).status_code == 404


@pytest.mark.parametrize(("body", "param"), [
    ({"model": LLAMA, "input": "x", "tools": [{"name": "f"}]}, "tools[0].type"),
    ({"model": LLAMA, "input": [{"type": "item_reference", "id": "x"}]}, "input[0].id"),
    ({"model": LLAMA, "input": "x", "temperature": "hot"}, "temperature"),
    ({"model": "no-such-model", "input": "x"}, "model"),
    ({"model": LLAMA}, "input"),
])
async def test_bad_requests_are_openai_errors(proxy, body: dict[str, Any], param: str) -> None:
    async with proxy() as client:
        reply = await client.post("/v1/responses", json=body)
    assert reply.status_code in (400, 404)
    validate(reply.json(), "ErrorResponse")
    assert reply.json()["error"]["param"] == param


async def test_stream_of_text(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("streamed words arrive")
    async with proxy() as client:
        reply = await client.post("/v1/responses", json={"model": LLAMA, "input": "go", "stream": True})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = validate_sse_responses_stream(reply.text)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "streamed words arrive" and len(deltas) == 3
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and final["output_text"] == "streamed words arrive"
    assert final["usage"]["output_tokens"] == 3


async def test_stream_with_reasoning_and_tool_call(proxy, fake: FakeWorkers) -> None:
    fake.models[GLM] = chat_dialect_tool_call("get_weather", '{"city": "Oslo"}')
    async with proxy() as client:
        reply = await client.post("/v1/responses", json={"model": GLM, "input": "Weather in Oslo?", "tools": [TOOL],
                                                         "stream": True, "reasoning": {"effort": "low"}})
    events = validate_sse_responses_stream(reply.text)
    kinds = [e["type"] for e in events]
    assert "response.reasoning_text.delta" in kinds and "response.function_call_arguments.done" in kinds
    output = events[-1]["response"]["output"]
    assert [i["type"] for i in output] == ["reasoning", "function_call"]
    assert json.loads(output[1]["arguments"]) == {"city": "Oslo"} and output[1]["call_id"].startswith("call_")
    _, sent = fake.calls[-1]
    assert sent["reasoning_effort"] == "low"


async def test_stream_is_stored(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("kept")
    async with proxy() as client:
        events = validate_sse_responses_stream(
            (await client.post("/v1/responses", json={"model": LLAMA, "input": "x", "stream": True})).text)
        stored = (await client.get(f"/v1/responses/{events[-1]['response']['id']}")).json()
    assert stored == events[-1]["response"]


async def test_failure_before_the_stream_is_a_plain_http_error(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = fixed(429, error_envelope(3040, "Capacity temporarily exceeded"))
    async with proxy() as client:
        reply = await client.post("/v1/responses", json={"model": LLAMA, "input": "x", "stream": True})
    assert reply.status_code == 429
    validate(reply.json(), "ErrorResponse")


async def test_failure_mid_stream_is_error_then_response_failed(proxy, fake: FakeWorkers) -> None:
    def broken(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return sse_response(sse({"response": "Half an"}, {"errors": [{"code": 3043, "message": "Internal error"}]},
                                done=False))

    fake.models[LLAMA] = broken
    async with proxy() as client:
        reply = await client.post("/v1/responses", json={"model": LLAMA, "input": "x", "stream": True})
        events = validate_sse_responses_stream(reply.text)
        assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
        failed = events[-1]["response"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
        assert "3043" in events[-2]["message"]
        assert failed["output"][0]["content"][0]["text"] == "Half an"
        # A failed response is stored as OpenAI stores it, so the client can look at what came back.
        assert (await client.get(f"/v1/responses/{failed['id']}")).json()["status"] == "failed"


async def test_max_output_tokens_makes_an_incomplete_response(proxy, fake: FakeWorkers) -> None:
    def cut(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={"result": {"response": "one two", "usage": {
            "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}, "success": True, "errors": []})

    fake.models[LLAMA] = cut
    async with proxy() as client:
        body = (await client.post("/v1/responses", json={"model": LLAMA, "input": "x", "max_output_tokens": 2})).json()
    validate(body, "Response")
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}


# ---- legacy completions ----------------------------------------------------------------------------


async def test_completion(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("a time")
    async with proxy() as client:
        reply = await client.post("/v1/completions", json={"model": LLAMA, "prompt": ["Once upon", "Long ago"],
                                                           "echo": True, "max_tokens": 10})
    body = reply.json()
    validate(body, "CreateCompletionResponse")
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(0, "Once upona time"), (1, "Long agoa time")]
    assert body["usage"] == {"prompt_tokens": 14, "completion_tokens": 4, "total_tokens": 18}


async def test_completion_stream(proxy, fake: FakeWorkers) -> None:
    fake.models[LLAMA] = native_text("and they lived")
    async with proxy() as client:
        reply = await client.post("/completions", json={"model": LLAMA, "prompt": "x", "stream": True, "n": 1,
                                                        "stream_options": {"include_usage": True}})
    assert reply.text.endswith("data: [DONE]\n\n")
    payloads = [json.loads(line[6:]) for line in reply.text.splitlines()
                if line.startswith("data: {")]
    for chunk in payloads:
        # OpenAI itself sends `finish_reason: null` until the last chunk; the spec's enum leaves null out.
        assert [p for p in errors(chunk, "CreateCompletionResponse") if "finish_reason" not in p] == []
        assert chunk["object"] == "text_completion"
    assert "".join(c["text"] for p in payloads for c in p["choices"]) == "and they lived"
    assert payloads[-2]["choices"][-1]["finish_reason"] == "stop"
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(("extra", "param"), [({"suffix": "END"}, "suffix"), ({"logprobs": 1}, "logprobs"),
                                              ({"prompt": [1, 2]}, "prompt")])
async def test_completion_refuses_what_it_cannot_do(proxy, extra: dict[str, Any], param: str) -> None:
    async with proxy() as client:
        reply = await client.post("/v1/completions", json={"model": LLAMA, "prompt": "x", **extra})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == param
    validate(reply.json(), "ErrorResponse")


@pytest.mark.parametrize("url", ["ftp://example.com/cat.png", "http://127.0.0.1/private.png"])
async def test_image_fetch_errors_name_the_input(proxy, url: str) -> None:
    body = {"model": LLAMA, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": url}]}]}
    async with proxy() as client:
        reply = await client.post("/v1/responses", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "input"


async def test_chat_private_image_refusal_names_the_part(proxy) -> None:
    # Regression: the non-public-address refusal used to carry `param: null` on the chat route too.
    body = {"model": LLAMA, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://127.0.0.1/private.png"}}]}]}
    async with proxy() as client:
        reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "messages[0].content[0].image_url.url"


async def test_a_proxy_bug_mid_stream_still_ends_the_responses_stream_in_band() -> None:
    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.core.openai.responses import CreateResponseRequest
    from cfai_cli.core.translate.responses import response_shell
    from cfai_cli.core.translate.responses_stream import ResponseBuilder
    from cfai_cli.server.routes.common import sse_response
    from cfai_cli.service.chat_stream import EventStream

    shell = response_shell(validate_request(CreateResponseRequest, {"input": "x"}), response_id="resp_1",
                           created_at=1, model="m")
    builder = ResponseBuilder(shell, new_id=lambda prefix: f"{prefix}_1")

    async def events():  # type: ignore[no-untyped-def]
        yield builder.start()
        raise RuntimeError("a bug")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:  # the client stays until the answer ends
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await sse_response(EventStream(events()), done=False, named=True, on_error=builder.fail)({}, receive, send)
    body = b"".join(message.get("body", b"") for message in sent)
    streamed = validate_sse_responses_stream(body)
    assert [e["type"] for e in streamed] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert streamed[-2]["code"] == "internal_error"
    assert sent[-1]["more_body"] is False
