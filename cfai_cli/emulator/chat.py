"""The Chat-Completions text dialect (vLLM-served models): `chat.completion` results and chunk streams.

Imports only the standard library and the emulator's own modules. Input is lenient like vLLM
(an OpenAI body, or the native messages/prompt body qwen3 takes); output follows reference §2.6–2.8,
including running usage on every chunk and Workers AI's own trailing `{"response":"","usage":…}` event.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response
from cfai_cli.emulator.catalogue import TextSpec
from cfai_cli.emulator.content import (
    SLOW,
    SLOW_SECONDS,
    Conversation,
    Plan,
    content_text,
    plan_answer,
    read_messages,
    read_prompt,
)
from cfai_cli.emulator.schema import read_tool
from cfai_cli.emulator.wire import (
    CREATED,
    bad_input,
    envelope,
    json_response,
    nth_seed,
    pieces,
    short_id,
    sse_response,
)

_ROLES = {"developer", "system", "user", "assistant", "tool", "function"}
_EFFORTS = {"low", "medium", "high", None}


def _check_int(body: Mapping[str, Any], key: str, low: int, high: int) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_input(f"must be integer at '/{key}'")
    if not low <= value <= high:
        raise bad_input(f"must be >= {low} and <= {high} at '/{key}'")


def validate(body: Mapping[str, Any]) -> None:
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise bad_input("must be a non-empty array at '/messages'")
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
                raise bad_input(f"must be equal to one of the allowed values at '/messages/{i}/role'")
            content = message.get("content")
            if content is None and not (message["role"] == "assistant" and message.get("tool_calls")):
                raise bad_input(f"must be string or array at '/messages/{i}/content'")
            if content is not None and not isinstance(content, str | list | Mapping):
                raise bad_input(f"must be string or array at '/messages/{i}/content'")
    elif not isinstance(body.get("prompt"), str) or not body["prompt"]:
        raise bad_input("required properties at '/' are 'messages'")
    _check_int(body, "max_tokens", 1, 10_000_000)
    _check_int(body, "max_completion_tokens", 1, 10_000_000)
    _check_int(body, "n", 1, 128)
    if "reasoning_effort" in body and body["reasoning_effort"] not in _EFFORTS:
        raise bad_input("must be equal to one of the allowed values at '/reasoning_effort'")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, Mapping)
                            or fmt.get("type") not in ("text", "json_object", "json_schema")):
        raise bad_input("must be equal to one of the allowed values at '/response_format/type'")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad_input("must be array at '/tools'")


def reasoning_on(spec: TextSpec, body: Mapping[str, Any]) -> bool:
    """Whether this request gets reasoning: `reasoning_effort: null` or `enable_thinking: false` turn it off."""
    if spec.reasoning == "always":
        return True  # gpt-oss: "Reasoning cannot be disabled" (reference §2.8)
    kwargs = body.get("chat_template_kwargs")
    thinking = kwargs.get("enable_thinking") if isinstance(kwargs, Mapping) else None
    if spec.reasoning == "default_on":
        return thinking is not False and not ("reasoning_effort" in body and body["reasoning_effort"] is None)
    if spec.reasoning == "opt_in":
        return thinking is True or body.get("reasoning_effort") is not None
    return False


def json_schema_of(fmt: Any) -> tuple[bool, Mapping[str, Any] | None]:
    """(json_mode, schema) from OpenAI's `{name, schema}` wrapper or the bare schema native bodies carry."""
    if not isinstance(fmt, Mapping) or fmt.get("type") not in ("json_object", "json_schema"):
        return False, None
    inner = fmt.get("json_schema")
    if not isinstance(inner, Mapping):
        return True, None
    if isinstance(inner.get("schema"), Mapping):
        return True, inner["schema"]
    if "name" in inner and not ({"type", "properties"} & inner.keys()):
        return True, None  # a wrapper without a schema
    return True, inner


def _stops(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


def plan_for(model: str, spec: TextSpec, body: Mapping[str, Any]) -> tuple[Conversation, Plan]:
    conv = read_messages(body["messages"]) if "messages" in body else read_prompt(body["prompt"])
    tools = [read_tool(t, f"/tools/{i}") for i, t in enumerate(body.get("tools") or [])]
    json_mode, schema = json_schema_of(body.get("response_format"))
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or spec.default_max_tokens
    plan = plan_answer(
        model, conv, tools=tools, tool_choice=body.get("tool_choice"), json_mode=json_mode, schema=schema,
        reasoning="field" if reasoning_on(spec, body) else "none", max_tokens=limit, stop=_stops(body.get("stop")),
        parallel=body.get("parallel_tool_calls") is not False,
    )
    return conv, plan


def usage(prompt_tokens: int, completion: int, reasoning: int, cached: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def _refuse_images(body: Mapping[str, Any]) -> None:
    """A text-only vLLM model refuses image parts (as vLLM does: the model is not multimodal)."""
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        if isinstance(message, Mapping) and content_text(message.get("content"))[1]:
            raise bad_input(f"this model does not accept images at '/messages/{i}/content'")


def run(model: str, spec: TextSpec, body: Mapping[str, Any], seed: bytes, *, cached: int = 0) -> Response:
    validate(body)
    if not spec.vision:
        _refuse_images(body)
    if body.get("stream") is True and not spec.streams:
        # gpt-oss answers a stream request with an empty JSON result, not SSE (reference §2.6).
        return json_response(envelope({}))
    conv, plan = plan_for(model, spec, body)
    n = body.get("n") or 1
    if body.get("stream") is True:
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        return sse_response(_chunks(model, conv, plan, n, seed, include_usage=include_usage, cached=cached),
                            delay=SLOW_SECONDS if SLOW in conv.user_text else 0.0)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(plan.content) if plan.content else None,
                               "refusal": None}
    if spec.reasoning != "none":
        message["reasoning_content"] = "".join(plan.reasoning) or None
    if plan.tool_calls:
        message["tool_calls"] = [{"id": short_id("chatcmpl-tool-", nth_seed(seed, i)), "type": "function",
                                  "function": {"name": call.name, "arguments": call.arguments_json}}
                                 for i, call in enumerate(plan.tool_calls)]
    result = {
        "id": short_id("chatcmpl-", seed),
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": i, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
                    for i in range(n)],
        "usage": usage(conv.prompt_tokens, plan.completion_tokens * n, len(plan.reasoning) * n, cached),
        "system_fingerprint": None,
    }
    return json_response(envelope(result))


def _deltas(plan: Plan, seed: bytes) -> Iterator[tuple[dict[str, Any], int]]:
    """(delta, tokens it costs) for one choice, in the order vLLM sends them."""
    yield {"role": "assistant", "content": ""}, 0
    for piece in plan.reasoning:
        yield {"reasoning_content": piece}, 1
    for piece in plan.content:
        yield {"content": piece}, 1
    for i, call in enumerate(plan.tool_calls):
        yield {"tool_calls": [{"index": i, "id": short_id("chatcmpl-tool-", nth_seed(seed, i)), "type": "function",
                               "function": {"name": call.name, "arguments": ""}}]}, 1
        for fragment in pieces(call.arguments_json):
            yield {"tool_calls": [{"index": i, "function": {"arguments": fragment}}]}, 1


def _chunks(model: str, conv: Conversation, plan: Plan, n: int, seed: bytes, *,
            include_usage: bool, cached: int) -> Iterator[dict[str, Any]]:
    base = {"id": short_id("chatcmpl-", seed), "object": "chat.completion.chunk", "created": CREATED, "model": model}
    spent = thought = 0
    for index in range(n):
        for delta, cost in _deltas(plan, seed):
            spent += cost
            thought += cost if "reasoning_content" in delta else 0
            # Running totals on every chunk, as Workers AI's vLLM models send them (reference §2.6).
            yield {**base, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}],
                   "usage": usage(conv.prompt_tokens, spent, thought, cached)}
        yield {**base, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                    "finish_reason": plan.finish_reason}],
               "usage": usage(conv.prompt_tokens, spent, thought, cached)}
    total = usage(conv.prompt_tokens, spent, thought, cached)
    if include_usage:
        yield {**base, "choices": [], "usage": total}
    # Workers AI's own trailing usage event carries the cached count only sometimes (reference §2.6): here, never,
    # so a client of cfai sees it only if cfai keeps the count the earlier chunks gave.
    yield {"response": "", "usage": {k: total[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
