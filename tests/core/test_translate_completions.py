"""Legacy completions translation: prompts in, chat request out, and chat answers back as text_completion."""

from __future__ import annotations

from typing import Any

import pytest

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletion, ChatCompletionChunk
from cfai_cli.core.openai.completions import CompletionRequest
from cfai_cli.core.translate.completions import (
    choices_from_chat,
    chunk_choices,
    prompts,
    text_completion,
    to_chat_request,
)
from cfai_cli.errors import InvalidRequest
from tests.openai_schema import validate


def req(**fields: Any) -> CompletionRequest:
    return validate_request(CompletionRequest, {"model": "gpt-4o", "prompt": "Once upon", **fields})


def test_prompt_becomes_one_user_message_with_the_options() -> None:
    r = req(max_tokens=20, stop=["\n"], n=2, temperature=0.5, seed=7)
    body = to_chat_request(r, prompts(r)[0], stream=True).model_dump(exclude_none=True)
    assert body["messages"] == [{"role": "user", "content": "Once upon"}]
    assert {k: body[k] for k in ("max_tokens", "stop", "n", "temperature", "seed", "stream")} == {
        "max_tokens": 20, "stop": ["\n"], "n": 2, "temperature": 0.5, "seed": 7, "stream": True}
    assert body["stream_options"] == {"include_usage": True}


def test_a_list_of_prompts() -> None:
    assert prompts(req(prompt=["a", "b"])) == ["a", "b"]


@pytest.mark.parametrize(("fields", "param"), [
    ({"suffix": "end"}, "suffix"),
    ({"logprobs": 2}, "logprobs"),
    ({"best_of": 3}, "best_of"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": [[1, 2]]}, "prompt"),
    ({"prompt": []}, "prompt"),
])
def test_what_workers_ai_cannot_do_is_refused_clearly(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        prompts(req(**fields))
    assert caught.value.status == 400 and caught.value.param == param


def test_empty_suffix_and_matching_best_of_are_fine() -> None:
    assert prompts(req(suffix="", best_of=2, n=2)) == ["Once upon"]


CHAT: ChatCompletion = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "@cf/m/x",
    "choices": [
        {"index": 0, "logprobs": None, "finish_reason": "stop",
         "message": {"role": "assistant", "content": " a time", "refusal": None}},
        {"index": 1, "logprobs": None, "finish_reason": "length",
         "message": {"role": "assistant", "content": " a midnight", "refusal": None}}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}}


@pytest.mark.parametrize(("echo", "base", "texts", "indexes"), [
    (False, 0, [" a time", " a midnight"], [0, 1]),
    (True, 2, ["Once upon a time", "Once upon a midnight"], [2, 3]),
])
def test_choices_from_chat(echo: bool, base: int, texts: list[str], indexes: list[int]) -> None:
    choices = choices_from_chat(CHAT, "Once upon", echo=echo, base=base)
    assert [c["text"] for c in choices] == texts and [c["index"] for c in choices] == indexes
    assert [c["finish_reason"] for c in choices] == ["stop", "length"]
    out = text_completion(choices, completion_id="cmpl-1", created=1, model="@cf/m/x")
    out["usage"] = CHAT["usage"]
    validate(out, "CreateCompletionResponse")


def _chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> ChatCompletionChunk:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # type: ignore[typeddict-item]


def test_stream_chunks_echo_once_and_skip_empty_deltas() -> None:
    started: set[int] = set()
    seen = [chunk_choices(c, "P:", echo=True, base=0, started=started) for c in (
        _chunk({"role": "assistant", "content": ""}), _chunk({"content": "x"}), _chunk({}, "tool_calls"))]
    assert seen == [[{"text": "P:", "index": 0, "logprobs": None, "finish_reason": None}],
                    [{"text": "x", "index": 0, "logprobs": None, "finish_reason": None}],
                    [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]]
    assert chunk_choices(_chunk({"content": ""}), "P:", echo=False, base=0, started=set()) == []
