"""The offline Workers AI emulator, driven over HTTP exactly as cfai's client drives it (through ASGITransport).

Checks the wire contract of reference workers-ai.md: envelopes, both text dialects and both stream formats,
native schema strictness, JSON mode, tools, the gpt-oss stream quirk, errors, the catalogue and fault models.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from cfai_cli.emulator import create_emulator_app, guard
from cfai_cli.emulator.catalogue import CATALOGUE, TEXT_MODELS
from cfai_cli.errors import InvalidRequest, ModelNotFound, QuotaExceeded, RateLimited, UpstreamAuthError
from cfai_cli.upstream.workers import WorkersAIClient

pytestmark = pytest.mark.anyio

BASE = "http://offline.cfai.invalid/client/v4"
RUN = "/accounts/offline/ai/run/"
LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
SCOUT = "@cf/meta/llama-4-scout-17b-16e-instruct"
GLM = "@cf/zai-org/glm-4.7-flash"
GEMMA4 = "@cf/google/gemma-4-26b-a4b-it"
GPT_OSS = "@cf/openai/gpt-oss-120b"
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "required": ["location"],
            "properties": {
                "location": {"type": "string", "description": "city"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "unit"},
                "days": {"type": "integer", "description": "days"},
                "hourly": {"type": "boolean", "description": "hourly?"},
            },
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Current time",
                                         "parameters": {"type": "object", "properties": {}}}}
UUID_TAIL = re.compile(r" \([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\)$")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def post(model: str, body: Any, *, token: str | None = "test-token", raw: bytes | None = None,
               path: str = RUN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_emulator_app()), base_url=BASE) as client:
        if raw is not None:
            return await client.post(path + model, content=raw, headers=headers)
        return await client.post(path + model, json=body, headers=headers)


async def search(token: str | None = "test-token", **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_emulator_app()), base_url=BASE) as client:
        return await client.get("/accounts/offline/ai/models/search", params=params, headers=headers)


def sse_data(response: httpx.Response) -> list[str]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks), blocks
    return [b[len("data: ") :] for b in blocks]


def events(response: httpx.Response) -> list[dict[str, Any]]:
    data = sse_data(response)
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def result(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    return body["result"]


def error(response: httpx.Response, status: int, code: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["messages"] == []
    assert body["errors"][0]["code"] == code
    message: str = body["errors"][0]["message"]
    return message


# ---- native dialect ----------------------------------------------------------------------------


async def test_native_answer_is_enveloped_canned_and_deterministic() -> None:
    body = {"messages": [{"role": "system", "content": "Be brief"}, *user("Hello   there\nfriend")]}
    first, second = await post(LLAMA, body), await post(LLAMA, body)
    out = result(first)
    assert first.content == second.content
    assert set(out) == {"response", "tool_calls", "usage"}  # no id, no finish_reason (reference §2.3)
    assert out["response"].startswith(f"[offline] cfai's built-in emulator answering {LLAMA}.")
    assert out["response"].endswith("You said: Hello there friend")
    assert out["tool_calls"] == []
    words = len(out["response"].split())
    assert words >= 15
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": words, "total_tokens": 5 + words}


async def test_native_prompt_form_and_long_text_quoted_to_200_chars() -> None:
    out = result(await post(LLAMA, {"prompt": "word " * 100}))
    quoted = out["response"].split("You said: ", 1)[1]
    assert quoted.endswith("...") and len(quoted) <= 203


async def test_native_stream_pieces_padding_usage_and_done() -> None:
    body = {"messages": user("Tell me something")}
    whole = result(await post(LLAMA, body))
    evs = events(await post(LLAMA, {**body, "stream": True}))
    tokens, final = evs[:-1], evs[-1]
    assert len(tokens) == whole["usage"]["completion_tokens"] >= 15
    assert all(set(e) == {"response", "p"} for e in tokens)
    assert "".join(e["response"] for e in tokens) == whole["response"]
    assert len({len(e["p"]) for e in tokens}) > 1  # padding of varying length
    assert final == {"response": "", "usage": whole["usage"]}


async def test_native_max_tokens_truncates_observably() -> None:
    full = result(await post(LLAMA, {"messages": user("hi")}))
    cut = result(await post(LLAMA, {"messages": user("hi"), "max_tokens": 4}))
    assert cut["usage"]["completion_tokens"] == 4
    assert cut["response"] == "[offline] cfai's built-in emulator"
    assert full["response"].startswith(cut["response"])
    evs = events(await post(LLAMA, {"messages": user("hi"), "max_tokens": 4, "stream": True}))
    assert len(evs) == 5 and evs[-1]["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": user("x"), "stop": ["\n"]}, "('stop')"),
        ({"messages": user("x"), "n": 1}, "('n')"),
        ({"messages": user("x"), "max_completion_tokens": 10}, "('max_completion_tokens')"),
        ({"messages": user("x"), "tool_choice": "any", "tools": [WEATHER]}, "allowed values at '/tool_choice'"),
        ({"messages": user("x"), "parallel_tool_calls": False, "tools": [WEATHER]}, "('parallel_tool_calls')"),
        ({"prompt": "x", "tool_choice": "auto"}, "('tool_choice')"),
        ({"messages": user("x"), "stream_options": {"include_usage": True}}, "('stream_options')"),
        ({"messages": user("x"), "logprobs": True}, "('logprobs')"),
        ({"messages": user("x"), "user": "u1"}, "('user')"),
        ({"messages": user("x"), "seed": 0}, "must be >= 1 at '/seed'"),
        ({"messages": user("x"), "frequency_penalty": -0.5}, "must be >= 0 at '/frequency_penalty'"),
        ({"messages": user("x"), "presence_penalty": -1}, "must be >= 0 at '/presence_penalty'"),
        ({"messages": user("x"), "top_k": 51}, "must be <= 50 at '/top_k'"),
        ({"messages": user("x"), "max_tokens": 1.5}, "must be integer at '/max_tokens'"),
        ({"messages": [{"role": "assistant", "content": None}]}, "must be string at '/messages/0/content'"),
        ({"messages": [{"role": "user"}]}, "required properties at '/messages/0' are 'content'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "allowed values at '/messages/0/role'"),
        ({}, "required properties at '/' are 'prompt'"),
        ({"prompt": "x", "messages": user("x")}, "oneOf"),
        ({"prompt": ""}, "fewer than 1 characters at '/prompt'"),
        ({"prompt": "x", "tools": [WEATHER]}, "('tools')"),
    ],
)
async def test_native_schema_rejects_untranslated_openai_bodies(body: dict[str, Any], fragment: str) -> None:
    message = error(await post(LLAMA, body), 400, 5006)
    assert message.startswith("AiError: Bad input: Error: ")
    assert fragment in message
    assert UUID_TAIL.search(message)


@pytest.mark.parametrize(
    ("tool", "where"),
    [
        ({"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}},
         "'/tools/0/function' are 'description'"),
        ({"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}},
         "'/tools/0/parameters/properties/a' are 'description'"),
        ({"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}},
         "'/tools/0/function/parameters' are 'properties'"),
    ],
)
async def test_native_tools_need_descriptions(tool: dict[str, Any], where: str) -> None:
    message = error(await post(LLAMA, {"messages": user("x"), "tools": [tool]}), 400, 5006)
    assert f"required properties at {where}" in message


async def test_native_tool_call_flat_shape_with_synthesised_arguments() -> None:
    flat_tool = {"name": "get_weather", **{k: v for k, v in WEATHER["function"].items() if k != "name"}}
    for tools in ([WEATHER], [flat_tool]):
        out = result(await post(LLAMA, {"messages": user("Weather in Paris?"), "tools": tools}))
        assert out["response"] is None
        assert out["tool_calls"] == [{"name": "get_weather", "arguments": {
            "location": "London", "unit": "celsius", "days": 1, "hourly": True}}]
    stream = events(await post(LLAMA, {"messages": user("Weather in Paris?"), "tools": [WEATHER], "stream": True}))
    assert stream[0]["tool_calls"] == out["tool_calls"]
    assert stream[-1]["usage"] == out["usage"]


async def test_scout_tool_calls_use_its_openai_ish_shape_with_object_arguments() -> None:
    out = result(await post(SCOUT, {"messages": user("Weather?"), "tools": [WEATHER]}))
    (call,) = out["tool_calls"]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"]["location"] == "London"


async def test_native_tool_result_is_quoted_back() -> None:
    messages = [*user("Weather?"),
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 12}'}]
    out = result(await post(LLAMA, {"messages": messages, "tools": [WEATHER]}))
    assert out["tool_calls"] == []
    assert 'The tool get_weather returned: {"temp": 12}' in out["response"]


async def test_native_json_mode_answers_an_object_from_the_schema() -> None:
    schema = {"type": "object", "properties": {
        "city": {"type": "string"}, "population": {"type": "integer", "minimum": 5},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        "when": {"type": "string", "format": "date"}, "ok": {"type": ["boolean", "null"]}}}
    out = result(await post(LLAMA, {"messages": user("x"), "response_format": {"type": "json_schema",
                                                                                "json_schema": schema}}))
    assert out["response"] == {"city": "London", "population": 5, "tags": ["a"], "when": "2026-01-01", "ok": True}
    assert out["usage"]["completion_tokens"] == len(json.dumps(out["response"]).split())
    loose = result(await post(LLAMA, {"messages": user("x"), "response_format": {"type": "json_object"}}))
    assert isinstance(loose["response"], dict) and loose["response"]["offline"] is True


async def test_native_json_mode_cannot_stream_or_be_truncated() -> None:
    fmt = {"type": "json_object"}
    message = error(await post(LLAMA, {"messages": user("x"), "response_format": fmt, "stream": True}), 400, 5006)
    assert "JSON Mode does not support streaming" in message
    message = error(await post(LLAMA, {"messages": user("x"), "response_format": fmt, "max_tokens": 2}), 400, 5006)
    assert "JSON Mode couldn't be met" in message


async def test_native_images_only_as_data_uris_on_vision_models() -> None:
    def content(url: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image_url", "image_url": {"url": url}}]}]

    out = result(await post(SCOUT, {"messages": content("data:image/png;base64,iVBORw0KGgo=")}))
    assert "an image" in out["response"] and out["response"].endswith("You said: What is this?")
    message = error(await post(SCOUT, {"messages": content("https://example.com/cat.png")}), 400, 5006)
    assert "HTTP URL will not be accepted" in message
    error(await post(LLAMA, {"messages": content("data:image/png;base64,iVBORw0KGgo=")}), 400, 5006)


async def test_native_reasoning_models_inline_think_tags() -> None:
    out = result(await post("@cf/deepseek-ai/deepseek-r1-distill-qwen-32b", {"prompt": "hi"}))
    assert out["response"].startswith("<think>\n") and "</think>\n\n[offline]" in out["response"]


# ---- chat-completions dialect ------------------------------------------------------------------


async def test_chat_dialect_answers_a_chat_completion_with_reasoning() -> None:
    out = result(await post(GLM, {"messages": user("Hello")}))
    assert out["object"] == "chat.completion" and out["model"] == GLM
    assert out["id"].startswith("chatcmpl-") and isinstance(out["created"], int)
    (choice,) = out["choices"]
    assert choice["finish_reason"] == "stop" and choice["index"] == 0
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"].endswith("You said: Hello")
    assert "offline" in message["reasoning_content"]
    usage = out["usage"]
    reasoning = len(message["reasoning_content"].split())
    assert usage["completion_tokens_details"]["reasoning_tokens"] == reasoning
    assert usage["completion_tokens"] == reasoning + len(message["content"].split())
    assert usage["prompt_tokens"] == 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize(
    ("model", "extra", "reasons"),
    [
        (GLM, {"reasoning_effort": None}, False),
        (GLM, {"chat_template_kwargs": {"enable_thinking": False}}, False),
        (GEMMA4, {}, False),
        (GEMMA4, {"reasoning_effort": "low"}, True),
        (GPT_OSS, {"reasoning_effort": None}, True),  # gpt-oss cannot turn reasoning off
        ("@cf/qwen/qwen3-30b-a3b-fp8", {}, True),
    ],
)
async def test_reasoning_controls(model: str, extra: dict[str, Any], reasons: bool) -> None:
    message = result(await post(model, {"messages": user("Hi"), **extra}))["choices"][0]["message"]
    assert bool(message.get("reasoning_content")) is reasons


async def test_chat_dialect_rejects_openai_values_it_does_not_know() -> None:
    message = error(await post(GLM, {"messages": user("x"), "reasoning_effort": "minimal"}), 400, 5006)
    assert "'/reasoning_effort'" in message
    error(await post(GLM, {"messages": user("x"), "max_completion_tokens": 0}), 400, 5006)


async def test_chat_dialect_stream_reasoning_then_content_running_usage_and_trailer() -> None:
    body = {"messages": user("Hello"), "stream_options": {"include_usage": True}}
    whole = result(await post(GLM, body))
    evs = events(await post(GLM, {**body, "stream": True}))
    chunks, usage_chunk, trailer = evs[:-2], evs[-2], evs[-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    kinds = [next(iter(d)) for d in deltas[1:-1]]
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning_content")  # reasoning first, then content
    message = whole["choices"][0]["message"]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == message["reasoning_content"]
    assert "".join(d.get("content", "") for d in deltas) == message["content"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    running = [c["usage"]["completion_tokens"] for c in chunks]
    assert running == sorted(running) and running[-1] == whole["usage"]["completion_tokens"]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == whole["usage"]
    assert trailer == {"response": "", "usage": {k: whole["usage"][k] for k in
                                                 ("prompt_tokens", "completion_tokens", "total_tokens")}}
    without = events(await post(GLM, {"messages": user("Hello"), "stream": True}))
    assert all(e.get("choices") != [] for e in without)  # the usage-only chunk is opt-in


async def test_chat_dialect_tool_calls_whole_and_streamed() -> None:
    body = {"messages": user("Weather?"), "tools": [TIME, WEATHER], "tool_choice": {
        "type": "function", "function": {"name": "get_weather"}}}
    choice = result(await post(GLM, body))["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"] and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "London", "unit": "celsius", "days": 1,
                                                          "hourly": True}
    deltas = [e["choices"][0]["delta"] for e in events(await post(GLM, {**body, "stream": True}))[:-1]]
    pieces = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert pieces[0]["id"].startswith("chatcmpl-tool-")  # ids differ per request, as they do upstream
    assert pieces[0] == {"index": 0, "id": pieces[0]["id"], "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}
    assert len(pieces) > 2 and all(set(p) == {"index", "function"} for p in pieces[1:])
    assert "".join(p["function"]["arguments"] for p in pieces) == call["function"]["arguments"]
    default = result(await post(GLM, {"messages": user("x"), "tools": [TIME, WEATHER]}))["choices"][0]["message"]
    assert default["tool_calls"][0]["function"]["name"] == "get_time"
    none = result(await post(GLM, {"messages": user("x"), "tools": [WEATHER], "tool_choice": "none"}))
    assert none["choices"][0]["finish_reason"] == "stop"
    message = error(await post(GLM, {"messages": user("x"), "tools": [WEATHER], "tool_choice": {
        "type": "function", "function": {"name": "nope"}}}), 400, 5006)
    assert "'nope'" in message


async def test_chat_dialect_tool_result_is_quoted_back() -> None:
    messages = [*user("Weather?"),
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    choice = result(await post(GLM, {"messages": messages, "tools": [WEATHER]}))["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"].endswith("The tool get_weather returned: sunny")


async def test_chat_dialect_length_limits_count_reasoning_first() -> None:
    short = result(await post(GLM, {"messages": user("x"), "max_completion_tokens": 5}))
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["choices"][0]["message"]["content"] is None  # the budget went on thinking
    assert short["usage"]["completion_tokens"] == 5
    plain = result(await post(GLM, {"messages": user("x"), "max_tokens": 3, "reasoning_effort": None}))
    assert plain["choices"][0]["message"]["content"] == "[offline] cfai's built-in"
    assert plain["choices"][0]["finish_reason"] == "length"


async def test_chat_dialect_json_mode_content_is_a_json_string() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
        "type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "number"}}}}}
    content = result(await post(GLM, {"messages": user("x"), "response_format": fmt}))["choices"][0]["message"]
    assert json.loads(content["content"]) == {"city": "London", "n": 1}
    streamed = events(await post(GLM, {"messages": user("x"), "response_format": fmt, "stream": True}))
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in streamed[:-1] if e.get("choices"))
    assert json.loads(text) == {"city": "London", "n": 1}
    loose = result(await post(GLM, {"messages": user("x"), "response_format": {"type": "json_object"}}))
    assert json.loads(loose["choices"][0]["message"]["content"])["offline"] is True


async def test_gpt_oss_stream_quirk_and_chat_answer() -> None:
    quirk = await post(GPT_OSS, {"messages": user("x"), "stream": True})
    assert quirk.headers["content-type"].startswith("application/json")
    assert quirk.json() == {"result": {}, "success": True, "errors": [], "messages": []}
    out = result(await post(GPT_OSS, {"messages": user("x")}))
    assert out["choices"][0]["message"]["reasoning_content"]


async def test_gpt_oss_responses_input() -> None:
    out = result(await post(GPT_OSS, {"input": "Hello there", "instructions": "Be kind"}))
    assert out["object"] == "response" and out["status"] == "completed"
    kinds = [item["type"] for item in out["output"]]
    assert kinds == ["reasoning", "message"]
    assert out["output"][1]["content"][0]["text"].endswith("You said: Hello there")
    assert out["usage"]["input_tokens"] == 4


# ---- errors and routing ------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "   "])
async def test_missing_token_is_an_authentication_error(token: str | None) -> None:
    for response in (await post(LLAMA, {"prompt": "x"}, token=token), await search(token=token)):
        assert error(response, 401, 10000) == "Authentication error"
        assert response.json()["result"] is None


async def test_unknown_model_is_5007() -> None:
    message = error(await post("@cf/acme/nope-1b", {"prompt": "x"}), 400, 5007)
    assert re.fullmatch(r"AiError: No such model: No such model @cf/acme/nope-1b or task \([0-9a-f-]{36}\)", message)


async def test_invalid_json_and_non_object_bodies_are_5006() -> None:
    assert "not valid JSON" in error(await post(LLAMA, None, raw=b"{nope"), 400, 5006)
    assert "must be object at '/'" in error(await post(LLAMA, [1, 2]), 400, 5006)


async def test_non_text_models_are_listed_but_not_emulated_yet() -> None:
    # cfai serves no object-detection endpoint, so the emulator lists such a model but does not run it.
    message = error(await post("@cf/facebook/detr-resnet-50", {"image": [1, 2]}), 400, 5006)
    assert "does not emulate Object Detection models yet" in message


@pytest.mark.parametrize("prefix", ["", "/client/v4", "/v1/acct/gw/workers-ai"])
async def test_routes_match_by_suffix(prefix: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_emulator_app()),
                                 base_url="http://x", headers={"Authorization": "Bearer t"}) as client:
        response = await client.post(f"{prefix}/accounts/a1/ai/run/{LLAMA}", json={"prompt": "x"})
        assert result(response)["response"].startswith("[offline]")
        missing = await client.get(f"{prefix}/accounts/a1/ai/nothing")
    assert error(missing, 404, 7003) == "No route for the URI"


# ---- catalogue ---------------------------------------------------------------------------------


async def test_catalogue_paginates_20_by_default() -> None:
    first = (await search()).json()
    assert first["success"] is True
    info = first["result_info"]
    assert info["page"] == 1 and info["per_page"] == 20 and info["count"] == 20
    total = info["total_count"]
    assert total == len(CATALOGUE) >= 25
    names = [m["name"] for m in first["result"]]
    page = 2
    while batch := (await search(page=page)).json()["result"]:
        assert len(batch) <= 20
        names += [m["name"] for m in batch]
        page += 1
    assert len(names) == len(set(names)) == total
    assert (await search(page=99)).json()["result"] == []
    assert (await search(per_page=100)).json()["result_info"]["count"] == total


async def test_catalogue_search_and_task_filters_are_case_insensitive() -> None:
    found = (await search(search="LLAMA-4")).json()["result"]
    assert [m["name"] for m in found] == [SCOUT]
    by_description = {m["name"] for m in (await search(search="768-dimensional")).json()["result"]}
    assert by_description == {"@cf/baai/bge-base-en-v1.5"}
    for task, name in [("text embeddings", "@cf/baai/bge-base-en-v1.5"),
                       ("Text-to-Image", "@cf/black-forest-labs/flux-1-schnell"),
                       ("automatic speech recognition", "@cf/openai/whisper"),
                       ("TEXT-TO-SPEECH", "@cf/myshell-ai/melotts"), ("Translation", "@cf/meta/m2m100-1.2b")]:
        items = (await search(task=task, per_page=100)).json()["result"]
        assert name in {m["name"] for m in items}
        assert {m["task"]["name"].lower() for m in items} == {task.lower()}
    text = (await search(task="Text Generation", per_page=100)).json()["result"]
    assert {m["name"] for m in text} == set(TEXT_MODELS) | guard.MODELS  # the guard is served by emulator/guard.py


async def test_catalogue_items_have_the_real_shape() -> None:
    items = {m["name"]: m for m in (await search(per_page=100)).json()["result"]}
    oss = items[GPT_OSS]
    assert oss["id"] == "f9f2250b-1048-4a52-9910-d0bf976616a1"
    assert oss["task"] == {"id": "c329a1f9-323d-4e91-b2aa-582dd4188d34", "name": "Text Generation",
                           "description": oss["task"]["description"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", oss["created_at"])
    props = {p["property_id"]: p["value"] for p in oss["properties"]}
    assert props["context_window"] == "128000" and props["function_calling"] == "true"
    assert props["price"][0] == {"unit": "per M input tokens", "price": 0.35, "currency": "USD"}
    assert props["reasoning_effort"]["mandatory"] is True
    hermes = {p["property_id"]: p["value"] for p in items["@hf/nousresearch/hermes-2-pro-mistral-7b"]["properties"]}
    assert hermes["beta"] == "true" and hermes["planned_deprecation_date"] == "2026-05-30"
    for item in items.values():
        assert set(item) == {"id", "source", "name", "description", "task", "created_at", "tags", "properties"}


# ---- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status", "code"),
                         [("429", 429, 3040), ("3040", 429, 3040), ("4006", 429, 4006), ("3036", 429, 3036),
                          ("3046", 408, 3046), ("3006", 413, 3006), ("5035", 403, 5035), ("500", 500, 3043)])
async def test_fault_models_answer_error_envelopes(kind: str, status: int, code: int) -> None:
    for stream in (False, True):
        response = await post(f"@cf/cfai/fault-{kind}", {"messages": user("x"), "stream": stream})
        assert UUID_TAIL.search(error(response, status, code))
        assert response.json()["result"] == {}
        assert response.headers.get("retry-after") == ("1" if code == 3040 else None)


async def test_fault_html_page() -> None:
    response = await post("@cf/cfai/fault-5xx-html", {"prompt": "x"})
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


async def test_fault_broken_streams() -> None:
    cut = sse_data(await post("@cf/cfai/fault-stream-cut", {"prompt": "x", "stream": True}))
    assert cut and "[DONE]" not in cut and all("response" in json.loads(d) for d in cut)
    with pytest.raises(ValueError):
        json.loads((await post("@cf/cfai/fault-stream-cut", {"prompt": "x"})).content)
    broken = sse_data(await post("@cf/cfai/fault-stream-error", {"prompt": "x", "stream": True}))
    assert "[DONE]" not in broken
    last = json.loads(broken[-1])
    assert last["success"] is False and last["errors"][0]["code"] == 3046
    garbage = sse_data(await post("@cf/cfai/fault-stream-garbage", {"prompt": "x", "stream": True}))
    with pytest.raises(ValueError):
        [json.loads(d) for d in garbage[:-1]]
    error(await post("@cf/cfai/fault-nonsense", {"prompt": "x"}), 400, 5007)


# ---- through cfai's own client -----------------------------------------------------------------


def workers_client() -> WorkersAIClient:
    return WorkersAIClient(account_id="offline", api_token="offline", api_base=BASE, timeout=5, max_retries=0,
                           transport=httpx.ASGITransport(app=create_emulator_app()))


async def test_cfai_client_runs_streams_and_lists_against_the_emulator() -> None:
    client = workers_client()
    try:
        answer = await client.run(LLAMA, {"messages": user("hi"), "max_tokens": 64})
        assert answer["response"].startswith("[offline]")
        stream = await client.stream(GLM, {"messages": user("hi"), "stream": True})
        assert stream.chunks is not None
        raw = b"".join([chunk async for chunk in stream.chunks])
        assert raw.endswith(b"data: [DONE]\n\n")
        quirk = await client.stream(GPT_OSS, {"messages": user("hi"), "stream": True})
        assert quirk.chunks is None and quirk.result == {}
        models = await client.models_search({})
        assert len(models) == len(CATALOGUE)
    finally:
        await client.aclose()


@pytest.mark.parametrize(("model", "body", "expected"), [
    ("@cf/cfai/fault-3040", {"prompt": "x"}, RateLimited),
    ("@cf/cfai/fault-4006", {"prompt": "x"}, QuotaExceeded),
    ("@cf/acme/none", {"prompt": "x"}, ModelNotFound),
    (LLAMA, {"prompt": "x", "seed": 0}, InvalidRequest),
])
async def test_cfai_client_maps_emulated_errors(model: str, body: dict[str, Any], expected: type[Exception]) -> None:
    client = workers_client()
    try:
        with pytest.raises(expected):
            await client.run(model, body)
    finally:
        await client.aclose()


async def test_cfai_client_sees_auth_failure() -> None:
    client = WorkersAIClient(account_id="offline", api_token=" ", api_base=BASE, timeout=5, max_retries=0,
                             transport=httpx.ASGITransport(app=create_emulator_app()))
    try:
        with pytest.raises(UpstreamAuthError):
            await client.run(LLAMA, {"prompt": "x"})
    finally:
        await client.aclose()


async def test_token_verify_answers_as_cloudflare_does() -> None:
    """`cfai doctor --offline` asks the emulator the token check: any bearer token is active, none is 401."""
    transport = httpx.ASGITransport(app=create_emulator_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        good = await client.get("/user/tokens/verify", headers={"authorization": "Bearer anything"})
        assert good.status_code == 200
        body = good.json()
        assert body["success"] is True and body["result"]["status"] == "active" and len(body["result"]["id"]) == 32
        missing = await client.get("/user/tokens/verify")
        assert missing.status_code == 401 and missing.json()["errors"][0]["code"] == 10000
        assert (await client.post("/user/tokens/verify", headers={"authorization": "Bearer x"})).status_code == 405
    workers = WorkersAIClient(account_id="offline", api_token="t", api_base=BASE, timeout=5, transport=transport)
    assert (await workers.verify_token())["status"] == "active"
    assert len(await workers.models_page(per_page=2)) == 2
