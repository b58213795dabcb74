"""gpt-oss's Responses-API branch on /ai/run (`{"input": …}`): a non-streaming `response` object (reference §2.10).

Imports only the standard library and the emulator's own modules. Input items are turned into
chat-style messages so the same canned answer, reasoning and tool call apply as in the other dialects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response
from cfai_cli.emulator.catalogue import TextSpec
from cfai_cli.emulator.content import plan_answer, read_messages
from cfai_cli.emulator.schema import read_tool
from cfai_cli.emulator.wire import CREATED, bad_input, envelope, json_response, nth_seed, short_id


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"]
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    if not isinstance(items, list):
        raise bad_input("must be string or array at '/input'")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise bad_input(f"must be object at '/input/{i}'")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role", "user"), "content": item.get("content", "")})
        elif kind == "function_call":
            messages.append({"role": "assistant", "content": "",
                             "tool_calls": [{"id": item.get("call_id"), "function": {"name": item.get("name")}}]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output", "")})
    return messages


def run(model: str, spec: TextSpec, body: Mapping[str, Any], seed: bytes, *, cached: int = 0) -> Response:
    if body.get("stream") is True:
        return json_response(envelope({}))  # gpt-oss does not stream on /ai/run (reference §2.6)
    conv = read_messages(_messages(body))
    tools = [read_tool(t, f"/tools/{i}") for i, t in enumerate(body.get("tools") or [])]
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    # Responses puts the schema flat in `text.format` (no `json_schema` wrapper).
    json_mode = isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")
    schema = fmt.get("schema") if json_mode and isinstance(fmt, Mapping) else None
    limit = body.get("max_output_tokens")
    plan = plan_answer(model, conv, tools=tools, tool_choice=body.get("tool_choice"), json_mode=json_mode,
                       schema=schema if isinstance(schema, Mapping) else None, reasoning="field",
                       max_tokens=limit if isinstance(limit, int) else None,
                       parallel=body.get("parallel_tool_calls") is not False)
    output: list[dict[str, Any]] = [{
        "type": "reasoning", "id": short_id("rs_", seed), "summary": [],
        "content": [{"type": "reasoning_text", "text": "".join(plan.reasoning)}],
    }]
    for i, call in enumerate(plan.tool_calls):
        output.append({"type": "function_call", "id": short_id("fc_", nth_seed(seed, i)),
                       "call_id": short_id("call_", nth_seed(seed, i)), "name": call.name,
                       "arguments": call.arguments_json, "status": "completed"})
    if not plan.tool_calls and plan.content:
        output.append({"type": "message", "id": short_id("msg_", seed), "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": "".join(plan.content), "annotations": []}]})
    completion = plan.completion_tokens
    result = {
        "id": short_id("resp_", seed), "object": "response", "created_at": CREATED, "model": model,
        "status": "incomplete" if plan.truncated else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if plan.truncated else None,
        "output": output,
        "usage": {"input_tokens": conv.prompt_tokens, "output_tokens": completion,
                  "total_tokens": conv.prompt_tokens + completion,
                  "input_tokens_details": {"cached_tokens": cached},
                  "output_tokens_details": {"reasoning_tokens": len(plan.reasoning)}},
    }
    return json_response(envelope(result))
