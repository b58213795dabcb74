"""Responses API input items: normalised to the shapes `GET /v1/responses/{id}/input_items` returns, then
turned into chat messages for the model.

Pure: the standard library, cfai_cli.errors and cfai_cli.core. Function and custom tool calls are replayed
under the flat names core.translate.toolset gave their tools. Calls of client-run hosted tools Codex and
other agents replay (local_shell, shell, apply_patch) become ordinary tool calls in the history; items of
tools that ran at OpenAI (web_search_call, file_search_call, mcp_call, ...) and `reasoning` items are kept
for the record and not sent on: Workers AI has no such tools and takes no reasoning history. The tools of
`additional_tools` items are offered to the model (core.translate.responses.response_tools).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cfai_cli.core.openai.responses import Item
from cfai_cli.core.translate.toolset import ToolSet, custom_arguments
from cfai_cli.errors import InvalidRequest

NewId = Callable[[str], str]

# Client-run hosted tools: (the call item, its output item) -> the tool name the history gives the call.
_CLIENT_CALLS = {"local_shell_call": "local_shell", "shell_call": "shell", "apply_patch_call": "apply_patch"}
_CLIENT_OUTPUTS = {f"{kind}_output" for kind in _CLIENT_CALLS}
# Items of tools that ran at OpenAI, and other items with nothing to tell a Workers AI model.
_RECORD_ONLY = frozenset({
    "reasoning", "web_search_call", "file_search_call", "image_generation_call", "code_interpreter_call",
    "computer_call", "computer_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "tool_search_call", "tool_search_output", "compaction",
})


_TEXT_PARTS = ("input_text", "output_text", "text")


def _unsupported(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_value")


def _text_of(value: Any) -> str:
    """Text of a tool's output: a string, a list of text parts, or anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and any(isinstance(p, Mapping) and p.get("type") in _TEXT_PARTS for p in value):
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


def _namespaced(out: Item, item: Mapping[str, Any]) -> Item:
    if isinstance(item.get("namespace"), str) and item["namespace"]:
        out["namespace"] = item["namespace"]
    return out


def _output(item: Mapping[str, Any], param: str) -> Any:
    output = item.get("output")
    if output is None:
        raise InvalidRequest(f"Missing required parameter: '{param}.output'.", param=f"{param}.output",
                             code="missing_required_parameter")
    return output


def _item(item: Any, param: str, new_id: NewId) -> Item:
    if not isinstance(item, Mapping):
        raise InvalidRequest(f"Invalid value for '{param}': an input item must be an object.", param=param,
                             code="invalid_value")
    kind = item.get("type", "message")
    if kind == "message":
        return _message(item, param, new_id)
    if kind == "function_call":
        arguments = item.get("arguments", "{}")
        return _namespaced({"type": "function_call", "id": _given_id(item, "fc", new_id),
                            "call_id": _required_str(item, "call_id", param),
                            "name": _required_str(item, "name", param),
                            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                            "status": "completed"}, item)
    if kind == "function_call_output":
        return {"type": "function_call_output", "id": _given_id(item, "fco", new_id),
                "call_id": _required_str(item, "call_id", param), "output": _output(item, param),
                "status": "completed"}
    if kind == "custom_tool_call":
        text = item.get("input", "")
        return _namespaced({"type": "custom_tool_call", "id": _given_id(item, "ctc", new_id),
                            "call_id": _required_str(item, "call_id", param),
                            "name": _required_str(item, "name", param),
                            "input": text if isinstance(text, str) else json.dumps(text), "status": "completed"},
                           item)
    if kind == "custom_tool_call_output":
        return {"type": "custom_tool_call_output", "id": _given_id(item, "ctco", new_id),
                "call_id": _required_str(item, "call_id", param), "output": _output(item, param),
                "status": "completed"}
    if kind in _CLIENT_CALLS or kind in _CLIENT_OUTPUTS:
        if not (item.get("call_id") or item.get("id")):
            _required_str(item, "call_id", param)
        return {**item, "id": _given_id(item, "item", new_id)}
    if kind == "additional_tools":
        # Its tools join the request's (core.translate.responses.response_tools); the item itself says nothing.
        if not isinstance(item.get("tools"), list):
            raise InvalidRequest(f"Missing required parameter: '{param}.tools'.", param=f"{param}.tools",
                                 code="missing_required_parameter")
        return {**item, "id": _given_id(item, "at", new_id), "role": item.get("role") or "developer"}
    if kind == "reasoning":
        return {**item, "id": _given_id(item, "rs", new_id), "summary": item.get("summary") or []}
    if kind in _RECORD_ONLY:
        return {**item, "id": _given_id(item, "item", new_id)}
    if kind == "item_reference":
        # Resolved against the stored responses by the service (resolve_references), before anything is sent.
        return {"type": "item_reference", "id": _required_str(item, "id", param)}
    raise _unsupported(f"Input items of type {kind!r} are not supported by cfai.", f"{param}.type")


def input_items(raw: str | list[Any] | None, new_id: NewId) -> list[Item]:
    """The request's input as normalised items, each with an id (kept if the client sent one)."""
    if raw is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(raw, str):
        return [_message({"role": "user", "content": raw}, "input", new_id)]
    return [_item(item, f"input[{i}]", new_id) for i, item in enumerate(raw)]


def resolve_references(items: Sequence[Item], find: Callable[[str], Item | None]) -> list[Item]:
    """`items` with each `item_reference` replaced by the stored item it names (`find`); 400 if unknown."""
    out: list[Item] = []
    for i, item in enumerate(items):
        if item["type"] != "item_reference":
            out.append(item)
            continue
        found = find(item["id"])
        if found is None:
            raise InvalidRequest(f"No item found with id '{item['id']}' (item references name items of stored "
                                 "responses).", param=f"input[{i}].id", code="invalid_value")
        out.append(found)
    return out


# ---- items -> chat messages ----------------------------------------------------------------------


def _chat_content(item: Item) -> str | list[dict[str, Any]]:
    parts = item["content"]
    if all(p["type"] in ("input_text", "output_text", "refusal") for p in parts):
        return "".join(p.get("text", p.get("refusal", "")) for p in parts)
    return [{"type": "text", "text": p["text"]} if p["type"] == "input_text"
            else {"type": "image_url", "image_url": {"url": p["image_url"], "detail": p["detail"]}}
            for p in parts]


def _add_call(messages: list[dict[str, Any]], call_id: str, name: str, arguments: str) -> None:
    """Consecutive calls join one assistant turn, as the model made them."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and "tool_calls" in last:
        last["tool_calls"].append(call)
    elif last is not None and last["role"] == "assistant":
        last["tool_calls"] = [call]
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _call_id(item: Item) -> str:
    value = item.get("call_id") or item.get("id")
    return value if isinstance(value, str) else ""


def items_to_messages(items: Sequence[Item], tools: ToolSet | None = None) -> list[dict[str, Any]]:
    """Chat messages for a conversation of items, tool calls under the names `tools` offers the model."""
    tools = tools or ToolSet()
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _chat_content(item)})
        elif kind == "function_call":
            _add_call(messages, item["call_id"], tools.flat_name(item["name"], item.get("namespace"), "function"),
                      item["arguments"])
        elif kind == "custom_tool_call":
            _add_call(messages, item["call_id"], tools.flat_name(item["name"], item.get("namespace"), "custom"),
                      custom_arguments(item["input"]))
        elif kind in _CLIENT_CALLS:
            what = item.get("action", item.get("operation", {}))
            _add_call(messages, _call_id(item), _CLIENT_CALLS[kind], json.dumps(what, ensure_ascii=False))
        elif kind in ("function_call_output", "custom_tool_call_output") or kind in _CLIENT_OUTPUTS:
            messages.append({"role": "tool", "tool_call_id": _call_id(item), "content": _text_of(item.get("output"))})
    return messages
