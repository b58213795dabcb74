"""Responses API -> Chat Completions: input items, tools and options become one ChatCompletionRequest.

Pure: pydantic, the standard library, cfai_cli.errors and cfai_cli.core. The Responses API is served on
top of the chat translation for every model, so this module only reshapes requests; ids are passed in.
Input items are first normalised to the exact shapes `GET /v1/responses/{id}/input_items` returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.openai.responses import CreateResponseRequest, Item, ResponseObject
from cfai_cli.errors import InvalidRequest

NewId = Callable[[str], str]

_TEXT_PARTS = ("input_text", "output_text", "text")


def _unsupported(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_value")


def _text_of(value: Any) -> str:
    """Text of a string, or of a list of text parts (function outputs may be either)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, Mapping) and p.get("type") in _TEXT_PARTS)
    return json.dumps(value, ensure_ascii=False)


def _part(part: Any, param: str, *, assistant: bool) -> dict[str, Any]:
    if isinstance(part, str):
        part = {"type": "output_text" if assistant else "input_text", "text": part}
    if not isinstance(part, Mapping):
        raise InvalidRequest(f"Invalid value for '{param}': a content part must be an object.", param=param,
                             code="invalid_value")
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequest(f"Missing required parameter: '{param}.text'.", param=f"{param}.text",
                                 code="missing_required_parameter")
        if assistant:
            return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return {"type": "input_text", "text": text}
    if kind == "refusal" and assistant:
        return {"type": "refusal", "refusal": str(part.get("refusal", ""))}
    if kind in ("input_image", "image_url") and not assistant:
        url = part.get("image_url")
        if isinstance(url, Mapping):  # chat-style {"image_url": {"url": ...}}
            url = url.get("url")
        if not isinstance(url, str) or not url:
            raise _unsupported("Images must be given as 'image_url' (a URL or a data URI); uploaded files "
                               "('file_id') are not available on Workers AI.", f"{param}.image_url")
        return {"type": "input_image", "image_url": url, "detail": part.get("detail") or "auto"}
    raise _unsupported(f"Content parts of type {kind!r} are not supported here.", f"{param}.type")


def _message(item: Mapping[str, Any], param: str, new_id: NewId) -> Item:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(f"Invalid value for '{param}.role': expected 'user', 'assistant', 'system' or "
                             f"'developer' (got {json.dumps(role)}).", param=f"{param}.role", code="invalid_value")
    assistant = role == "assistant"
    content = item.get("content")
    if content is None:
        raise InvalidRequest(f"Missing required parameter: '{param}.content'.", param=f"{param}.content",
                             code="missing_required_parameter")
    parts = [content] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise InvalidRequest(f"Invalid value for '{param}.content': expected a string or a list of parts.",
                             param=f"{param}.content", code="invalid_value")
    out: Item = {"type": "message", "id": _given_id(item, "msg", new_id), "role": role,
                 "content": [_part(p, f"{param}.content[{j}]", assistant=assistant) for j, p in enumerate(parts)],
                 "status": "completed"}
    return out


def _given_id(item: Mapping[str, Any], prefix: str, new_id: NewId) -> str:
    given = item.get("id")
    return given if isinstance(given, str) and given else new_id(prefix)


def _required_str(item: Mapping[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"Missing required parameter: '{param}.{key}'.", param=f"{param}.{key}",
                             code="missing_required_parameter")
    return value


def _item(item: Any, param: str, new_id: NewId) -> Item:
    if not isinstance(item, Mapping):
        raise InvalidRequest(f"Invalid value for '{param}': an input item must be an object.", param=param,
                             code="invalid_value")
    kind = item.get("type", "message")
    if kind == "message":
        return _message(item, param, new_id)
    if kind == "function_call":
        arguments = item.get("arguments", "{}")
        return {"type": "function_call", "id": _given_id(item, "fc", new_id),
                "call_id": _required_str(item, "call_id", param), "name": _required_str(item, "name", param),
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                "status": "completed"}
    if kind == "function_call_output":
        output = item.get("output")
        if output is None:
            raise InvalidRequest(f"Missing required parameter: '{param}.output'.", param=f"{param}.output",
                                 code="missing_required_parameter")
        return {"type": "function_call_output", "id": _given_id(item, "fco", new_id),
                "call_id": _required_str(item, "call_id", param), "output": output, "status": "completed"}
    if kind == "reasoning":
        # Kept for the record; Workers AI models take no reasoning history, so it is not sent on.
        return {**item, "id": _given_id(item, "rs", new_id), "summary": item.get("summary") or []}
    if kind == "item_reference":
        raise _unsupported("Item references are not supported; use previous_response_id, or send the items.",
                           f"{param}.type")
    raise _unsupported(f"Input items of type {kind!r} are not supported by cfai (Workers AI has no hosted tools).",
                       f"{param}.type")


def input_items(raw: str | list[Any] | None, new_id: NewId) -> list[Item]:
    """The request's input as normalised items, each with an id (kept if the client sent one)."""
    if raw is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(raw, str):
        return [_message({"role": "user", "content": raw}, "input", new_id)]
    return [_item(item, f"input[{i}]", new_id) for i, item in enumerate(raw)]


# ---- items -> chat messages ----------------------------------------------------------------------


def _chat_content(item: Item) -> str | list[dict[str, Any]]:
    parts = item["content"]
    if all(p["type"] in ("input_text", "output_text", "refusal") for p in parts):
        return "".join(p.get("text", p.get("refusal", "")) for p in parts)
    return [{"type": "text", "text": p["text"]} if p["type"] == "input_text"
            else {"type": "image_url", "image_url": {"url": p["image_url"], "detail": p["detail"]}}
            for p in parts]


def items_to_messages(items: Sequence[Item]) -> list[dict[str, Any]]:
    """Chat messages for a conversation of items; consecutive function calls join one assistant turn."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _chat_content(item)})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _text_of(item["output"])})
    return messages


# ---- tools, tool_choice, text.format -------------------------------------------------------------


def chat_tool(tool: Mapping[str, Any], param: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise _unsupported(f"Tools of type {tool.get('type')!r} are not available on Workers AI; only "
                           "'function' tools are.", f"{param}.type")
    fn = tool.get("function")
    if isinstance(fn, Mapping):  # chat-style {"type": "function", "function": {...}}, accepted leniently
        return {"type": "function", "function": dict(fn)}
    keys = ("name", "description", "parameters", "strict")
    return {"type": "function", "function": {k: tool[k] for k in keys if tool.get(k) is not None}}


def echo_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A tool as the Response object lists it (the flat FunctionTool shape)."""
    fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
    assert isinstance(fn, Mapping)
    return {"type": "function", "name": fn.get("name"), "description": fn.get("description"),
            "parameters": fn.get("parameters"), "strict": fn.get("strict")}


def echo_tool_choice(choice: str | Mapping[str, Any] | None) -> str | dict[str, Any]:
    """tool_choice as the Response object states it (chat-style named choices flattened)."""
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("function"), Mapping):
        return {"type": "function", "name": choice["function"].get("name")}
    return dict(choice)


def chat_tool_choice(choice: str | Mapping[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        return {"type": "function", "function": {"name": name}}
    if kind == "allowed_tools":
        tools = [{"type": "function", "function": {"name": t.get("name") or (t.get("function") or {}).get("name")}}
                 for t in choice.get("tools", []) if isinstance(t, Mapping)]
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools}}
    raise _unsupported(f"tool_choice of type {kind!r} is not available on Workers AI.", "tool_choice.type")


def _response_format(req: CreateResponseRequest) -> dict[str, Any] | None:
    fmt = req.text.format if req.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema_}
    if fmt.description is not None:
        schema["description"] = fmt.description
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


def check_supported(req: CreateResponseRequest) -> None:
    """Refuse clearly what cfai cannot do, before anything is sent upstream."""
    if req.background:
        raise _unsupported("Background responses are not supported; use stream: true for long answers.",
                           "background")
    if req.conversation is not None:
        raise _unsupported("Conversations objects are not supported; use previous_response_id.", "conversation")


def to_chat_request(req: CreateResponseRequest, history: Sequence[Item], items: Sequence[Item], *,
                    model: str, stream: bool) -> ChatCompletionRequest:
    """The chat request that answers `req`: instructions, earlier turns, then this request's items."""
    messages = items_to_messages([*history, *items])
    if req.instructions:
        messages.insert(0, {"role": "system", "content": req.instructions})
    if not messages:
        raise InvalidRequest("'input' must contain at least one message or item.", param="input",
                             code="invalid_value")
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    for ours, theirs in (("max_output_tokens", "max_completion_tokens"), ("temperature", "temperature"),
                         ("top_p", "top_p"), ("parallel_tool_calls", "parallel_tool_calls"), ("seed", "seed"),
                         ("user", "user")):
        value = getattr(req, ours)
        if value is not None:
            body[theirs] = value
    if req.tools:
        body["tools"] = [chat_tool(t, f"tools[{i}]") for i, t in enumerate(req.tools)]
    choice = chat_tool_choice(req.tool_choice)
    if choice is not None and (req.tools or choice == "none"):
        body["tool_choice"] = choice
    fmt = _response_format(req)
    if fmt is not None:
        body["response_format"] = fmt
    if req.reasoning is not None and req.reasoning.effort is not None:
        body["reasoning_effort"] = req.reasoning.effort
    try:
        return validate_request(ChatCompletionRequest, body)
    except InvalidRequest as exc:
        # The check ran on the chat request; name the field the client actually sent.
        param = responses_param(exc.param)
        raise InvalidRequest(exc.message.replace(f"'{exc.param}'", f"'{param}'"), param=param,
                             code=exc.code) from None


_PARAM_RENAMES = (("max_completion_tokens", "max_output_tokens"), ("response_format.json_schema", "text.format"),
                  ("response_format", "text.format"), ("reasoning_effort", "reasoning.effort"))


def responses_param(param: str | None) -> str | None:
    """A chat request's parameter path as the Responses request calls it."""
    if param is None:
        return None
    if param.startswith("messages"):
        return "input"
    if param.startswith("tools[") and ".function." in param:
        return param.replace(".function.", ".", 1)
    for chat, ours in _PARAM_RENAMES:
        if param.startswith(chat):
            return ours + param[len(chat):]
    return param


# ---- the Response object -------------------------------------------------------------------------


def response_shell(req: CreateResponseRequest, *, response_id: str, created_at: int, model: str) -> ResponseObject:
    """The Response before any output: what `response.created` carries and what the final one extends."""
    fmt = req.text.format if req.text and req.text.format else None
    text_format: dict[str, Any] = {"type": "text" if fmt is None else fmt.type}
    if fmt is not None and fmt.type == "json_schema":
        text_format.update(name=fmt.name or "response", schema=fmt.schema_)
        text_format.update({k: v for k, v in (("description", fmt.description), ("strict", fmt.strict))
                            if v is not None})
    shell: ResponseObject = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "output": [],
        "output_text": "",
        "parallel_tool_calls": req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": req.reasoning.effort if req.reasoning else None,
                      "summary": (req.reasoning.summary or req.reasoning.generate_summary) if req.reasoning else None},
        "store": req.store is not False,
        "temperature": req.temperature,
        "text": {"format": text_format},
        "tool_choice": echo_tool_choice(req.tool_choice),
        "tools": [echo_tool(t) for t in req.tools or []],
        "top_p": req.top_p,
        "truncation": req.truncation or "disabled",
        "metadata": dict(req.metadata or {}),
    }
    if req.user is not None:
        shell["user"] = req.user
    return shell

