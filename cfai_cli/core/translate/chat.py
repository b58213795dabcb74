"""Chat Completions -> Workers AI text generation: the body for /ai/run, as pure functions between typed values.

The answer direction (usage, stops, finish reasons, `chat.completion`) is core.translate.chat_answer.

Pure: pydantic, the standard library, cfai_cli.errors and cfai_cli.core. Ids, timestamps and the
default token budget are passed in; nothing here reads a clock, the environment or the network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from cfai_cli.core import jsonfast
from cfai_cli.core.catalog import speaks_chat_dialect
from cfai_cli.core.openai.chat import (
    AudioPart,
    ChatCompletionRequest,
    CustomToolCall,
    FilePart,
    ImagePart,
    Message,
    RefusalPart,
    TextPart,
    ToolCall,
)
from cfai_cli.core.translate.toolset import ChoicePlan, ToolSet, choose, custom_arguments, tool_set
from cfai_cli.errors import InvalidRequest

_SEED_MAX = 9_999_999_999


@dataclass(slots=True)
class WorkersChatCall:
    """What to send to /ai/run for one choice, and what the answer must be judged against."""

    model_id: str
    body: dict[str, Any]
    chat_dialect: bool
    max_tokens_sent: int | None
    stop: list[str] = field(default_factory=list)
    forced_tools: list[str] = field(default_factory=list)  # flat names, when tool_choice forces a call
    tools: ToolSet = field(default_factory=ToolSet)  # what the client defined behind each flat name
    max_tool_calls: int | None = None  # 1 when the client set parallel_tool_calls: false
    affinity: str | None = None  # the x-session-affinity every call of this request carries (core.affinity)


# ---- OpenAI -> Workers AI ------------------------------------------------------------------------


def _seed(seed: int) -> int:
    # Native schemas take 1..9,999,999,999; fold other seeds in deterministically.
    return seed if 1 <= seed <= _SEED_MAX else abs(seed) % _SEED_MAX + 1


def request_tools(req: ChatCompletionRequest) -> ToolSet:
    """The request's tools as plain function tools (core.translate.toolset): hosted ones left out."""
    if not req.tools:  # nearly every request: nothing to dump and normalise
        return ToolSet()
    return tool_set([t.model_dump(by_alias=True, exclude_none=True) for t in req.tools or []])


def request_choice(req: ChatCompletionRequest, tools: ToolSet) -> ChoicePlan:
    choice = req.tool_choice
    return choose(tools, choice if choice is None or isinstance(choice, str) else choice.model_dump(exclude_none=True))


def _flat_call(call: ToolCall, tools: ToolSet) -> tuple[str, str]:
    """(flat name, JSON arguments) of a replayed call, as the model was offered its tool."""
    if isinstance(call, CustomToolCall):
        return tools.flat_name(call.custom.name, kind="custom"), custom_arguments(call.custom.input)
    return tools.flat_name(call.name()), call.arguments_text()


def _tool_name_by_call_id(messages: Sequence[Message], tools: ToolSet) -> dict[str, str]:
    names: dict[str, str] = {}
    for message in messages:
        for call in message.tool_calls or []:
            if call.id:
                names[call.id] = _flat_call(call, tools)[0]
    return names


def _content_parts(message: Message, index: int, *, chat_dialect: bool) -> str | list[dict[str, Any]]:
    content = message.content
    if content is None:
        return ""  # Workers AI rejects null content (reference §2.2)
    if isinstance(content, str):
        return content
    if all(isinstance(p, TextPart | RefusalPart) for p in content):
        return "".join(p.text if isinstance(p, TextPart) else cast(RefusalPart, p).refusal for p in content)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, RefusalPart):
            parts.append({"type": "text", "text": part.refusal})
        elif isinstance(part, ImagePart):
            parts.append({"type": "image_url", "image_url": {"url": part.url()}})
        elif isinstance(part, AudioPart | FilePart) and chat_dialect:
            parts.append(part.model_dump(exclude_none=True))
        else:
            raise InvalidRequest(
                f"This model does not accept '{part.type}' content parts.",
                param=f"messages[{index}].content[{j}].type",
                code="unsupported_content",
            )
    return parts


def _message(message: Message, index: int, names: dict[str, str], tools: ToolSet, *,
             chat_dialect: bool) -> dict[str, Any]:
    role = message.role
    out: dict[str, Any]
    if role in ("system", "developer"):
        return {"role": "system", "content": message.text()}
    if role in ("tool", "function"):
        call_id = message.tool_call_id or ""
        out = {"role": "tool", "content": message.text(), "tool_call_id": call_id}
        name = names.get(call_id) or (tools.flat_name(message.name) if message.name else None)
        if name:
            out["name"] = name
        return out
    out = {"role": role, "content": _content_parts(message, index, chat_dialect=chat_dialect)}
    if role == "assistant" and message.tool_calls:
        out["tool_calls"] = []
        for call in message.tool_calls:
            name, arguments = _flat_call(call, tools)
            out["tool_calls"].append({"id": call.id, "type": "function",
                                      "function": {"name": name, "arguments": arguments}})
    return out


def _native_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Fill in what strict native schemas require: descriptions on the function and each property."""
    fn = tool["function"]
    params = dict(fn.get("parameters") or {})
    params.setdefault("type", "object")
    props = params.get("properties")
    if isinstance(props, dict):
        params["properties"] = {
            name: ({**spec, "description": spec.get("description") or name.replace("_", " ")}
                   if isinstance(spec, dict) else spec)
            for name, spec in props.items()
        }
    else:
        params["properties"] = {}
    description = fn.get("description") or fn["name"].replace("_", " ")
    return {"type": "function", "function": {"name": fn["name"], "description": description, "parameters": params}}


def _native_response_format(req: ChatCompletionRequest) -> dict[str, Any] | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object" or fmt.json_schema is None:
        return {"type": "json_object"}
    schema = dict(fmt.json_schema.schema_ or {"type": "object"})
    schema.setdefault("title", fmt.json_schema.name)
    if fmt.json_schema.description:
        schema.setdefault("description", fmt.json_schema.description)
    # Native models want the bare schema, not OpenAI's {name, schema, strict} wrapper (reference §2.4).
    return {"type": "json_schema", "json_schema": schema}


def to_workers_chat(
    req: ChatCompletionRequest, model_id: str, *, default_max_tokens: int, stream: bool
) -> WorkersChatCall:
    """The /ai/run body for one choice of `req` (several calls make `n` choices)."""
    chat_dialect = speaks_chat_dialect(model_id)
    tools = request_tools(req)
    choice = request_choice(req, tools)
    names = _tool_name_by_call_id(req.messages, tools)
    messages = [_message(m, i, names, tools, chat_dialect=chat_dialect) for i, m in enumerate(req.messages)]
    body: dict[str, Any] = {"messages": messages}
    limit = req.token_limit()
    if limit is None and not chat_dialect:
        limit = default_max_tokens  # native models silently stop at 256 otherwise
    if limit is not None:
        body["max_tokens"] = limit
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p if chat_dialect else max(req.top_p, 0.001)
    if req.seed is not None:
        body["seed"] = req.seed if chat_dialect else _seed(req.seed)
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(req, name)
        if value is not None:
            # Older native schemas only take 0..2.
            body[name] = value if chat_dialect else max(0.0, value)
    if chat_dialect:
        _chat_dialect_extras(req, body, choice)
    else:
        if choice.offered:
            body["tools"] = [_native_tool(t) for t in choice.offered]
            if choice.mode is not None:
                # As Cloudflare's own client sends it (reference §2.5): a named function is already the only
                # tool offered, so "required" forces it. Whether native models honour it is unconfirmed.
                body["tool_choice"] = choice.mode
        fmt = _native_response_format(req)
        if fmt is not None:
            body["response_format"] = fmt
    if stream:
        body["stream"] = True
        if chat_dialect:
            body["stream_options"] = {"include_usage": True}
    return WorkersChatCall(model_id, body, chat_dialect, limit, req.stop_sequences(), list(choice.forced), tools,
                           1 if req.parallel_tool_calls is False else None)


def _chat_dialect_extras(req: ChatCompletionRequest, body: dict[str, Any], choice: ChoicePlan) -> None:
    if choice.offered:
        body["tools"] = choice.offered
        if choice.named is not None:
            body["tool_choice"] = {"type": "function", "function": {"name": choice.named}}
        elif choice.mode is not None:
            body["tool_choice"] = choice.mode
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.stop_sequences():
        body["stop"] = req.stop_sequences()
    if req.response_format is not None and req.response_format.type != "text":
        body["response_format"] = req.response_format.model_dump(exclude_none=True, by_alias=True)
    if req.reasoning_effort is not None:
        effort = {"none": None, "minimal": "low", "xhigh": "high", "max": "high"}.get(req.reasoning_effort,
                                                                                   req.reasoning_effort)
        body["reasoning_effort"] = effort


def schema_fallback(body: dict[str, Any], error: InvalidRequest) -> dict[str, Any] | None:
    """What to resend when a native model's schema rejects (5006) a body, or None to give up.

    `tool_choice` first: cfai sends it as Cloudflare's client does, but whether every native schema takes it
    is unconfirmed (reference §2.5); then OpenAI-style tool history (see `legacy_tool_history`).
    """
    if str(error.upstream_code) != "5006":
        return None
    if "tool_choice" in body and "tool_choice" in error.message:
        return {k: v for k, v in body.items() if k != "tool_choice"}
    return legacy_tool_history(body)


def legacy_tool_history(body: dict[str, Any]) -> dict[str, Any] | None:
    """The same body with tool history in the older documented form, or None if it has none.

    Whether strict native schemas accept OpenAI-style `tool_calls`/`tool_call_id` history is unconfirmed
    (reference §2.5, §14.11); the older docs put the calls as JSON text in the assistant's content and the
    result in a plain `{role: tool, content}` message. The service retries with this on a schema error.
    """
    changed = False
    messages: list[dict[str, Any]] = []
    for message in body.get("messages", []):
        if message.get("role") == "assistant" and message.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": _loads_or_text(c["function"]["arguments"])}
                     for c in message["tool_calls"]]
            text = message.get("content") if isinstance(message.get("content"), str) else ""
            messages.append({"role": "assistant", "content": (text + "\n" if text else "") + json.dumps(calls)})
            changed = True
        elif message.get("role") == "tool" and ("tool_call_id" in message or "name" in message):
            messages.append({"role": "tool", "content": message.get("content", "")})
            changed = True
        else:
            messages.append(message)
    return {**body, "messages": messages} if changed else None


def _loads_or_text(arguments: str) -> Any:
    try:
        return jsonfast.loads_text(arguments)
    except ValueError:
        return arguments
