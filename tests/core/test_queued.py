"""Workers AI's async batch, pure: a batch line <-> one queued request (core.translate.queued), reading poll
answers (core.workers.queue). The native side of each line must be exactly what the live path sends for it,
and each answer exactly what the live path makes of the same result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.translate.chat import to_workers_chat
from cfai_cli.core.translate.queued import answer_line, item_error, plan_line
from cfai_cli.core.workers.queue import QueueItem, match_items, parse_queue_answer, queue_flag
from cfai_cli.errors import InvalidRequest, ModelNotFound, RateLimited, UpstreamError
from tests.openai_schema import validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "workers"
LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"  # native dialect
GLM = "@cf/zai-org/glm-4.7-flash"  # chat dialect
BGE = "@cf/baai/bge-base-en-v1.5"
CHAT, EMBED, LEGACY = "/v1/chat/completions", "/v1/embeddings", "/v1/completions"
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def result_of(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())["result"]


def ids(prefix: str) -> str:
    return f"{prefix}-test"


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": LLAMA, "messages": [{"role": "user", "content": "What is the capital of France?"}], **extra}


# ---- lines -> queued requests -----------------------------------------------------------------------------


@pytest.mark.parametrize("body, model", [
    (chat(), LLAMA),
    (chat(temperature=0.2, max_tokens=50, stop=["\n"], seed=7), LLAMA),
    (chat(tools=[TOOL]), LLAMA),
    (chat(tools=[TOOL], response_format={"type": "json_object"}), GLM),
    (chat(reasoning_effort="low"), GLM),
])
def test_a_chat_line_is_queued_as_the_live_path_sends_it(body: dict[str, Any], model: str) -> None:
    live = to_workers_chat(ChatCompletionRequest.model_validate(body), model, default_max_tokens=1024, stream=False)
    assert plan_line(CHAT, body, model, default_max_tokens=1024) == live.body


def test_a_completions_line_is_queued_as_one_user_message() -> None:
    body = {"model": LLAMA, "prompt": "Once upon a time", "max_tokens": 20, "stop": "."}
    assert plan_line(LEGACY, body, LLAMA, default_max_tokens=1024) == {
        "messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 20}
    assert plan_line(LEGACY, {**body, "prompt": ["only one"]}, LLAMA, default_max_tokens=9) is not None


def test_an_embeddings_line_is_queued_as_the_models_text_list() -> None:
    assert plan_line(EMBED, {"model": BGE, "input": "one"}, BGE, default_max_tokens=1) == {"text": ["one"]}
    assert plan_line(EMBED, {"model": BGE, "input": ["a", "b"]}, BGE, default_max_tokens=1) == {"text": ["a", "b"]}


@pytest.mark.parametrize("endpoint, body", [
    (CHAT, chat(stream=True)),
    (CHAT, chat(n=2)),
    (CHAT, chat(tools=[TOOL], tool_choice="required")),  # forced calls are checked and retried live
    (CHAT, chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})),
    (CHAT, {"model": LLAMA, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
    (CHAT, chat(temperature=9)),  # refused live with the live path's own 400
    (CHAT, {"model": LLAMA}),
    (LEGACY, {"model": LLAMA, "prompt": ["two", "prompts"]}),
    (LEGACY, {"model": LLAMA, "prompt": "x", "n": 3}),
    (LEGACY, {"model": LLAMA, "prompt": "x", "suffix": "y"}),
    (EMBED, {"model": BGE, "input": [f"text {i}" for i in range(101)]}),  # two live calls
    (EMBED, {"model": BGE, "input": ""}),
    ("/v1/responses", {"model": LLAMA, "input": "hi"}),
])
def test_lines_the_queue_cannot_carry_whole_are_left_to_the_live_path(endpoint: str, body: dict[str, Any]) -> None:
    assert plan_line(endpoint, body, LLAMA if endpoint != EMBED else BGE, default_max_tokens=1024) is None


# ---- queued results -> OpenAI bodies ------------------------------------------------------------------------


def test_a_native_result_becomes_the_chat_completion_the_live_path_makes() -> None:
    answer = answer_line(CHAT, chat(), LLAMA, result_of("native_text.json"), default_max_tokens=1024, new_id=ids,
                         created=1700000000)
    validate(answer.body, "CreateChatCompletionResponse")
    assert answer.body["id"] == "chatcmpl-test" and answer.body["created"] == 1700000000
    assert answer.body["choices"][0]["message"]["content"] == "The capital of France is Paris."
    assert answer.body["usage"]["prompt_tokens"] == 43
    assert (answer.prompt_tokens, answer.completion_tokens) == (43, 8)


def test_stop_sequences_and_tool_calls_are_applied_as_live() -> None:
    cut = answer_line(CHAT, chat(stop=["Paris"]), LLAMA, result_of("native_text.json"), default_max_tokens=1,
                      new_id=ids, created=0)
    assert cut.body["choices"][0]["message"]["content"] == "The capital of France is "
    tools = answer_line(CHAT, chat(tools=[TOOL]), GLM, result_of("glm_chat_completion_tools.json"),
                        default_max_tokens=1, new_id=ids, created=0)
    validate(tools.body, "CreateChatCompletionResponse")
    assert tools.body["choices"][0]["finish_reason"] == "tool_calls"
    assert tools.body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_a_completions_result_becomes_a_text_completion() -> None:
    body = {"model": LLAMA, "prompt": "Q: capital of France? A:", "echo": True}
    answer = answer_line(LEGACY, body, LLAMA, result_of("native_text.json"), default_max_tokens=1, new_id=ids,
                         created=5)
    validate(answer.body, "CreateCompletionResponse")
    assert answer.body["object"] == "text_completion" and answer.body["id"] == "cmpl-test"
    assert answer.body["choices"][0]["text"] == "Q: capital of France? A:The capital of France is Paris."
    assert answer.body["usage"] == {"prompt_tokens": 43, "completion_tokens": 8, "total_tokens": 51}


def test_an_embeddings_result_becomes_an_embeddings_list() -> None:
    result = {"shape": [2, 3], "data": [[1.0, 0.0, 0.0], [0.0, 3.0, 4.0]], "pooling": "mean"}
    answer = answer_line(EMBED, {"model": BGE, "input": ["a", "b"], "dimensions": 2}, BGE, result,
                         default_max_tokens=1, new_id=ids, created=0)
    validate(answer.body, "CreateEmbeddingResponse")
    assert [d["embedding"] for d in answer.body["data"]] == [[1.0, 0.0], [0.0, 1.0]]  # shortened, re-normalised
    assert answer.prompt_tokens == answer.body["usage"]["prompt_tokens"] == 2  # estimated: none reported
    with pytest.raises(UpstreamError, match="1 vectors for 2 inputs"):
        answer_line(EMBED, {"model": BGE, "input": ["a", "b"]}, BGE, {"data": [[1.0]]}, default_max_tokens=1,
                    new_id=ids, created=0)


def test_a_failed_request_is_the_error_its_live_call_would_raise() -> None:
    bad = item_error(QueueItem(0, 0, "0", False, None, 5006, "AiError: Bad input: must be <= 5 at '/temperature'"),
                     LLAMA)
    assert isinstance(bad, InvalidRequest) and bad.status == 400
    assert bad.to_openai()["error"]["message"] == "Workers AI error 5006: Bad input: must be <= 5 at '/temperature'"
    assert isinstance(item_error(QueueItem(0, 0, "0", False, None, 3040, "Out of capacity"), LLAMA), RateLimited)
    assert isinstance(item_error(QueueItem(0, 0, "0", False, None, "5007", "No such model"), LLAMA), ModelNotFound)
    lost = item_error(None, LLAMA)
    assert type(lost) is UpstreamError and lost.status == 502
    assert type(item_error(QueueItem(0, None, None, False, None, None, "boom"), LLAMA)) is UpstreamError


# ---- poll answers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["queued", "running", "Running"])
def test_a_batch_still_in_the_queue_has_no_items(status: str) -> None:
    answer = parse_queue_answer({"status": status, "request_id": "r", "model": LLAMA})
    assert answer.items is None and answer.status == status.lower()


def test_a_finished_batch_lists_each_requests_answer_or_failure() -> None:
    answer = parse_queue_answer({"responses": [
        {"id": 0, "result": {"response": "hi"}, "success": True, "external_reference": "0"},
        {"id": 1, "success": False, "errors": [{"code": "5006", "message": "bad"}], "external_reference": "1"},
        {"id": 2, "error": {"code": 3030, "message": "too long"}},
        {"id": 3, "success": False, "error": "just words"},
        {"id": 4, "success": False, "result": {}},
        "not an object",
    ], "usage": {"prompt_tokens": 3}})
    assert answer.items is not None and answer.usage == {"prompt_tokens": 3}
    first, *failed = answer.items
    assert first.success and first.result == {"response": "hi"} and first.reference == "0"
    assert [(i.success, i.code, i.message) for i in failed] == [
        (False, 5006, "bad"), (False, 3030, "too long"), (False, None, "just words"),
        (False, None, "the request failed"),
        (False, None, "Workers AI answered the request with something other than an object")]


@pytest.mark.parametrize("result", [{"status": "failed", "errors": [{"code": 3007, "message": "Timeout"}]},
                                    {"status": ""}, [], "queued"])
def test_a_poll_answer_neither_pending_nor_finished_is_an_upstream_error(result: Any) -> None:
    with pytest.raises(UpstreamError):
        parse_queue_answer(result)


def test_answers_are_matched_to_requests_by_reference_then_id_then_position() -> None:
    def item(position: int, ident: int | None, reference: str | None) -> QueueItem:
        return QueueItem(position, ident, reference, True, position)

    by_reference = [item(0, None, "2"), item(1, None, "0"), item(2, None, "1")]
    assert [m.result if m else None for m in match_items(by_reference, 3)] == [1, 2, 0]
    by_id = [item(0, 1, None), item(1, 0, None)]
    assert [m.result if m else None for m in match_items(by_id, 2)] == [1, 0]
    assert [m.result if m else None for m in match_items([item(0, None, None), item(1, None, None)], 2)] == [0, 1]
    assert match_items([item(0, 0, "0")], 2)[1] is None  # a request without an answer
    assert match_items([item(0, 7, "custom")], 1) == [None]  # out of range: not guessed


@pytest.mark.parametrize("value, counts", [("true", True), (" TRUE ", True), (True, True), ("false", False),
                                           (False, False), ("", False), (None, False), (1, False), ("yes", False)])
def test_the_catalogue_flag_counts_the_string_true_and_the_boolean(value: Any, counts: bool) -> None:
    assert queue_flag(value) is counts
