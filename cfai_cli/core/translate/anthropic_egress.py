"""OpenAI chat requests -> Anthropic Messages requests, and Anthropic `message` objects -> chat completions:
what an Anthropic *upstream* (upstream.anthropic) needs. The stream direction is anthropic_egress_stream.

Pure: the standard library, core and errors. The body is the client's chat request as the service passes it
to a ChatUpstream (already checked by core.openai.chat). Decisions (docs/routing.md says them to users):
- system and developer messages, wherever they are, join into `system`; consecutive turns of one role merge
  (Anthropic wants them alternating), so tool results become one user turn, ahead of any text after them;
- `max_completion_tokens` (else `max_tokens`, else 4096) is `max_tokens`; temperature is capped at 1
  (Anthropic's range); when both temperature and top_p are given only temperature goes (newer Claude models
  refuse both); seed, penalties, logit_bias, logprobs and the like have no Anthropic form and are dropped;
- reasoning_effort low/medium/high/xhigh/max is a thinking budget of 1024/4096/16384/32768/65536 tokens on
  top of the answer's max_tokens (unless the client set a limit: then within it, and off below 1024 tokens);
  thinking leaves temperature/top_p out (Anthropic refuses them with thinking) and is off when a tool is
  forced or the last assistant turn called tools (Anthropic refuses both: that turn would need its signed
  thinking, and thinking from the history is dropped);
- function names with '.' or ':' (which Anthropic does not allow) are sent with '_' and a hash, and mapped back;
- response_format json_object/json_schema is best effort: an instruction in `system` (no Anthropic field
  does it for every model); n > 1, custom tools and audio/file parts are a 400.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cfai_cli.core.translate.anthropic_out import tool_input, tool_use_id
from cfai_cli.errors import InvalidRequest

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; a client that sets none gets this
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 65536}
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for budget_tokens
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
           "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
_JSON_ONLY = "Answer with only a JSON object, no other text."
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")  # Anthropic's; chat names may also hold '.' and ':'


def tool_name(name: str) -> str:
    """The Anthropic name of a chat function: itself when Anthropic allows it, else '_' for what it does not
    and a hash (two names never become one); answers map it back (`chat_names`)."""
    if _TOOL_NAME.fullmatch(name):
        return name
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:119] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]


def chat_names(body: Mapping[str, Any]) -> dict[str, str]:
    """Anthropic tool name -> chat function name, for the request's tools whose name had to change."""
    names = (tool.get("function", {}).get("name") for tool in body.get("tools") or [])
    return {tool_name(name): name for name in names if isinstance(name, str) and tool_name(name) != name}


def unsupported(what: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"{what} is not supported by Anthropic upstreams.", param=param)


# ---- request -------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    """A system/developer/tool message's text: a string, or its text parts joined."""
    if isinstance(content, str) or content is None:
        return content or ""
    return "".join(part.get("text") or "" for part in content if part.get("type") == "text")


def _image(url: str, param: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise InvalidRequest("An image data URI must be base64 (data:image/png;base64,...).", param=param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("An image URL must be http(s) or a data: URI.", param=param)


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """User or assistant content as Anthropic blocks (empty text left out: Anthropic refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        text = part.get("text") if kind == "text" else part.get("refusal") if kind == "refusal" else None
        if text is not None:
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image(str(part["image_url"]["url"]), f"{param}[{j}].image_url.url"))
        else:
            raise unsupported(f"A content part of type {kind!r}", f"{param}[{j}].type")
    return blocks


def _tool_result(message: Mapping[str, Any], i: int) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id(str(message["tool_call_id"]))}
    content = message.get("content")
    if isinstance(content, list):
        parts = _blocks(content, f"messages[{i}].content")
        if parts:
            block["content"] = parts
    elif content:
        block["content"] = content
    return block


def _tool_uses(message: Mapping[str, Any], i: int) -> list[dict[str, Any]]:
    uses = []
    for j, call in enumerate(message.get("tool_calls") or []):
        if call.get("type") != "function":
            raise unsupported("A custom tool call", f"messages[{i}].tool_calls[{j}].type")
        function = call["function"]
        uses.append({"type": "tool_use", "id": tool_use_id(str(call["id"])), "name": tool_name(function["name"]),
                     "input": tool_input(function.get("arguments"))})
    return uses


def _turns(messages: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, alternating user/assistant turns)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message["role"]
        if role in ("system", "developer"):
            if text := _text(message.get("content")):
                system.append(text)
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(message, i)]
        elif role == "user":
            blocks = _blocks(message.get("content"), f"messages[{i}].content")
        elif role == "assistant":
            blocks = _blocks(message.get("content"), f"messages[{i}].content") + _tool_uses(message, i)
        else:
            raise unsupported(f"A message of role {role!r}", f"messages[{i}].role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]["content"]
            # Anthropic wants a user turn's tool results ahead of anything else in it.
            results = [b for b in previous + blocks if b["type"] == "tool_result"]
            turns[-1]["content"] = results + [b for b in previous + blocks if b["type"] != "tool_result"]
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _in_tool_loop(turns: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the last assistant turn called tools."""
    last = next((turn for turn in reversed(turns) if turn["role"] == "assistant"), None)
    return last is not None and any(block["type"] == "tool_use" for block in last["content"])


def _tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function":
            raise unsupported(f"A tool of type {tool.get('type')!r}", f"tools[{i}].type")
        function = tool["function"]
        out: dict[str, Any] = {"name": tool_name(function["name"]),
                               "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
        if function.get("description"):
            out["description"] = function["description"]
        tools.append(out)
    return tools


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(Anthropic's tool_choice, the tools left): allowed_tools narrows the tools."""
    if choice is None or choice == "auto":
        return None, tools
    if choice == "none":
        return {"type": "none"}, tools
    if choice == "required":
        return {"type": "any"}, tools
    kind = choice.get("type")
    if kind == "function":
        return {"type": "tool", "name": tool_name(choice["function"]["name"])}, tools
    if kind == "allowed_tools":
        allowed = choice["allowed_tools"]
        names = {tool_name(str(t.get("function", {}).get("name"))) for t in allowed.get("tools") or []}
        kept = [t for t in tools if t["name"] in names]
        return ({"type": "any"} if allowed.get("mode") == "required" else None), kept
    raise unsupported(f"A tool_choice of type {kind!r}", "tool_choice.type")


def _json_instruction(response_format: Mapping[str, Any] | None) -> str | None:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return _JSON_ONLY
    if kind == "json_schema":
        schema = (response_format or {}).get("json_schema") or {}
        return (f"{_JSON_ONLY} It must match this JSON schema:\n"
                f"{json.dumps(schema.get('schema') or {}, ensure_ascii=False)}")
    return None


def to_messages_request(body: Mapping[str, Any], extra_fields: Iterable[str] = ()) -> dict[str, Any]:
    """The Anthropic Messages body for a chat request body (stream and model as the body says); the
    `extra_fields` the upstream's config names (top_k, service_tier, ...) are copied as the client sent them."""
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("n > 1 is not supported by Anthropic upstreams (one answer per request); "
                             "send n = 1, or several requests.", param="n")
    system, messages = _turns(body["messages"])
    tools = _tools(body)
    choice, tools = _tool_choice(body.get("tool_choice"), tools)
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    if instruction := _json_instruction(body.get("response_format")):
        system.append(instruction)
    if system:
        out["system"] = "\n\n".join(system)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    budget = THINKING_BUDGETS.get(str(body.get("reasoning_effort")), 0)
    if (choice is not None and choice["type"] in ("any", "tool")) or _in_tool_loop(messages):
        # Anthropic refuses thinking with a forced tool (the client's explicit choice wins), and in a tool loop
        # whose last assistant turn has no (signed) thinking block, which cfai cannot replay.
        budget = 0
    if limit is not None:
        budget = min(budget, limit - 1)
    if budget >= MIN_THINKING_BUDGET:
        out["max_tokens"] = limit or DEFAULT_MAX_TOKENS + budget
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:
        out["max_tokens"] = limit or DEFAULT_MAX_TOKENS
        if body.get("temperature") is not None:
            out["temperature"] = min(float(body["temperature"]), 1.0)
        elif body.get("top_p") is not None:
            out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if tools:
        out["tools"] = tools
        if body.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        out["stream"] = True
    out.update((name, body[name]) for name in extra_fields if name in body)
    return out


# ---- answer --------------------------------------------------------------------------------------


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "end_turn", "stop")


def chat_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic usage as chat usage: tokens read from or written to the prompt cache are prompt tokens."""
    cached = int(usage.get("cache_read_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cached + int(usage.get("cache_creation_input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def completion_id(message_id: str) -> str:
    return f"chatcmpl-{message_id}"


def from_message(message: Mapping[str, Any], *, created: int, names: Mapping[str, str] | None = None
                 ) -> dict[str, Any]:
    """The chat.completion for an Anthropic `message` object; `created` is passed in (core has no clock), and
    `names` maps changed tool names back (`chat_names`)."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "tool_use":
            name = (names or {}).get(block["name"], block["name"])
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append({"id": block["id"], "type": "function", "function": {"name": name, "arguments": arguments}})
    answer: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                              "refusal": None}
    if calls:
        answer["tool_calls"] = calls
    if thoughts:
        answer["reasoning_content"] = "".join(thoughts)
    return {"id": completion_id(str(message.get("id") or "")), "object": "chat.completion", "created": created,
            "model": message.get("model") or "", "choices": [{
                "index": 0, "message": answer, "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason"))}],
            "usage": chat_usage(message.get("usage") or {})}
