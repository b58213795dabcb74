"""The native ("legacy") text dialect: strict input validation and `{response, tool_calls, usage}` answers.

Imports only the standard library and the emulator's own modules. Validation mirrors what the
real JSON schemas reject (reference §2.2, §2.5, §2.9, §13) with Ajv-style `AiError: Bad input` wording, so a
client that forwards an untranslated OpenAI body fails here the way it would against Cloudflare.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cfai_cli.emulator.asgi import Response
from cfai_cli.emulator.catalogue import TextSpec
from cfai_cli.emulator.content import (
    NO_JSON,
    SLOW,
    SLOW_SECONDS,
    Plan,
    ToolCall,
    plan_answer,
    read_messages,
    read_prompt,
)
from cfai_cli.emulator.schema import check_native_tool, read_tool
from cfai_cli.emulator.wire import (
    EmulatorError,
    bad_input,
    envelope,
    json_response,
    nth_seed,
    padding,
    short_id,
    sse_response,
)

_KNOBS = {"raw", "lora", "stream", "max_tokens", "temperature", "top_p", "top_k", "seed", "repetition_penalty",
          "frequency_penalty", "presence_penalty", "response_format", "options"}
_PROMPT_KEYS = _KNOBS | {"prompt"}
# `tool_choice` as Cloudflare's own client sends it ("auto" | "none" | "required", or a named function).
_MESSAGES_KEYS = _KNOBS | {"messages", "tools", "functions", "tool_choice"}
_CHOICES = ("auto", "none", "required")
_ROLES = {"system", "user", "assistant", "tool"}
_MESSAGE_KEYS = {"role", "content", "name", "tool_call_id", "tool_calls"}
# (minimum, maximum, integer) per knob; penalties follow the older 0..2 schemas (reference §2.2).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "max_tokens": (1, 1_000_000, True),
    "temperature": (0, 5, False),
    "top_p": (0.001, 2, False),
    "top_k": (1, 50, True),
    "seed": (1, 9_999_999_999, True),
    "repetition_penalty": (0, 2, False),
    "frequency_penalty": (0, 2, False),
    "presence_penalty": (0, 2, False),
}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_number(body: Mapping[str, Any], key: str) -> None:
    if key not in body:
        return
    low, high, integer = _RANGES[key]
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise bad_input(f"must be {'integer' if integer else 'number'} at '/{key}'")
    if value < low:
        raise bad_input(f"must be >= {_num(low)} at '/{key}'")
    if value > high:
        raise bad_input(f"must be <= {_num(high)} at '/{key}'")


def _check_content(content: Any, where: str, spec: TextSpec) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        # `content: null` is the classic failure of an untranslated OpenAI body (reference §2.2).
        raise bad_input(f"must be string at '{where}'")
    for j, part in enumerate(content):
        at = f"{where}/{j}"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind != "image_url":
            raise bad_input(f"must be equal to one of the allowed values at '{at}/type'")
        if not spec.vision:
            raise bad_input(f"this model does not accept images at '{at}'")
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else None
        if not isinstance(url, str) or not url.startswith("data:"):
            raise bad_input(f"image_url.url must be a data URI at '{at}/image_url/url' (HTTP URL will not be accepted)")


def _check_messages(messages: Any, spec: TextSpec) -> None:
    if not isinstance(messages, list):
        raise bad_input("must be array at '/messages'")
    if not messages:
        raise bad_input("must NOT have fewer than 1 items at '/messages'")
    for i, message in enumerate(messages):
        at = f"/messages/{i}"
        if not isinstance(message, Mapping):
            raise bad_input(f"must be object at '{at}'")
        extra = sorted(k for k in message if k not in _MESSAGE_KEYS)
        if extra:
            raise bad_input(f"must NOT have additional properties at '{at}' ('{extra[0]}')")
        for key in ("role", "content"):
            if key not in message:
                raise bad_input(f"required properties at '{at}' are '{key}'")
        if message["role"] not in _ROLES:
            raise bad_input(f"must be equal to one of the allowed values at '{at}/role'")
        _check_content(message["content"], f"{at}/content", spec)


def validate(body: Mapping[str, Any], spec: TextSpec) -> None:
    has_prompt, has_messages = "prompt" in body, "messages" in body
    if not has_prompt and not has_messages:
        raise bad_input("required properties at '/' are 'prompt'")
    if has_prompt and has_messages:
        raise bad_input("must match exactly one schema in oneOf at '/'")
    allowed = (_PROMPT_KEYS if has_prompt else _MESSAGES_KEYS) | ({"guided_json"} if spec.guided_json else set())
    if spec.vision:
        allowed = allowed | {"image"}
    extra = sorted(k for k in body if k not in allowed)
    if extra:
        # OpenAI-only fields (stop, n, tool_choice, max_completion_tokens, stream_options, user, ...) land here.
        raise bad_input(f"must NOT have additional properties at '/' ('{extra[0]}')")
    if has_prompt:
        if not isinstance(body["prompt"], str):
            raise bad_input("must be string at '/prompt'")
        if not body["prompt"]:
            raise bad_input("must NOT have fewer than 1 characters at '/prompt'")
    else:
        _check_messages(body["messages"], spec)
    for key in _RANGES:
        _check_number(body, key)
    for key in ("stream", "raw"):
        if key in body and not isinstance(body[key], bool):
            raise bad_input(f"must be boolean at '/{key}'")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type") not in ("json_object", "json_schema")):
        raise bad_input("must be equal to one of the allowed values at '/response_format/type'")
    choice = body.get("tool_choice")
    if choice is not None and choice not in _CHOICES and not (
            isinstance(choice, Mapping) and choice.get("type") == "function"
            and isinstance(choice.get("function"), Mapping) and isinstance(choice["function"].get("name"), str)):
        raise bad_input("must be equal to one of the allowed values at '/tool_choice'")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise bad_input("must be array at '/tools'")
        for i, tool in enumerate(tools):
            if not isinstance(tool, Mapping):
                raise bad_input(f"must be object at '/tools/{i}'")
            check_native_tool(tool, f"/tools/{i}")


def _native_call(call: ToolCall, spec: TextSpec, seed: bytes) -> dict[str, Any]:
    if spec.tool_shape == "scout":
        return {"id": short_id("chatcmpl-tool-", seed), "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}}
    return {"name": call.name, "arguments": call.arguments}


def _usage(prompt_tokens: int, plan: Plan, cached: int) -> dict[str, Any]:
    completion = plan.completion_tokens
    out: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                           "total_tokens": prompt_tokens + completion}
    if cached:  # newer models add it, and only sometimes (reference §2.3): here, when the prefix cache served
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def run(model: str, spec: TextSpec, body: Mapping[str, Any], seed: bytes, *, cached: int = 0) -> Response:
    validate(body, spec)
    fmt = body.get("response_format")
    json_mode = isinstance(fmt, Mapping)
    stream = body.get("stream") is True
    if json_mode and stream:
        raise EmulatorError(400, 5006, "AiError: Bad input: JSON Mode does not support streaming")
    conv = read_prompt(body["prompt"]) if "prompt" in body else read_messages(body["messages"])
    conv.has_image = conv.has_image or "image" in body  # llama-3.2-vision's top-level byte array (reference §2.9)
    tools = [read_tool(t, f"/tools/{i}") for i, t in enumerate(body.get("tools") or [])]
    schema = fmt.get("json_schema") if isinstance(fmt, Mapping) else body.get("guided_json")
    plan = plan_answer(
        model, conv, tools=tools, tool_choice=body.get("tool_choice"), json_mode=json_mode or "guided_json" in body,
        schema=schema if isinstance(schema, Mapping) else None,
        reasoning="tags" if spec.reasoning == "think_tags" else "none",
        max_tokens=body.get("max_tokens", spec.default_max_tokens), native=True,
    )
    usage = _usage(conv.prompt_tokens, plan, cached)
    calls = [_native_call(call, spec, nth_seed(seed, i)) for i, call in enumerate(plan.tool_calls)]
    if json_mode and (plan.truncated or NO_JSON in conv.user_text):
        raise EmulatorError(400, 5006, "AiError: JSON Mode couldn't be met")
    if stream:
        return sse_response(_events(plan, calls, usage, seed), delay=SLOW_SECONDS if SLOW in conv.user_text else 0.0)
    response: Any = "".join(plan.content)
    if json_mode and not plan.tool_calls:
        response = plan.json_value  # JSON mode answers an object, not a string (reference §2.4)
    elif plan.tool_calls:
        response = None
    return json_response(envelope({"response": response, "tool_calls": calls, "usage": usage}))


def _events(plan: Plan, calls: list[dict[str, Any]], usage: dict[str, Any], seed: bytes) -> Iterator[dict[str, Any]]:
    for i, piece in enumerate(plan.content):
        yield {"response": piece, "p": padding(seed, i)}
    if calls:
        yield {"tool_calls": calls, "p": padding(seed, len(plan.content))}
    # Usage rides on the last event before [DONE] (reference §2.6).
    yield {"response": "", "usage": usage}
