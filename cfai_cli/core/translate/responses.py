"""Responses API -> Chat Completions: input items, tools and options become one ChatCompletionRequest.

Pure: pydantic, the standard library, cfai_cli.errors and cfai_cli.core. The Responses API is served on
top of the chat translation for every model, so this module only reshapes requests; ids are passed in.
Input items are first normalised to the exact shapes `GET /v1/responses/{id}/input_items` returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cfai_cli.core.openai.base import validate_request
from cfai_cli.core.openai.chat import ChatCompletionRequest
from cfai_cli.core.openai.responses import CreateResponseRequest, Item, ResponseObject
from cfai_cli.core.translate.responses_items import input_items, items_to_messages
from cfai_cli.core.translate.toolset import ToolSet, tool_set
from cfai_cli.errors import InvalidRequest

__all__ = ["input_items", "items_to_messages"]  # re-exported: the request side of the Responses translation


def _unsupported(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_value")


def response_tools(req: CreateResponseRequest, *, history: Sequence[Item] = (),
                   items: Sequence[Mapping[str, Any]] | None = None) -> ToolSet:
    """The tools for the model: the request's `tools`, then those each `additional_tools` item adds (in the
    stored `history`, then in this request's input: `items`, else the raw `input`). Codex sends all its tools
    that way for models in its "responses lite" mode (its default model among them). Function tools go under
    flat names; hosted ones are dropped."""
    tools = tool_set(req.tools)
    for item in history:
        if item["type"] == "additional_tools":
            tool_set(item["tools"], param="previous_response_id", into=tools)
    raw = req.raw_input()
    source = items if items is not None else raw if isinstance(raw, list) else []
    for i, item in enumerate(source):
        if isinstance(item, Mapping) and item.get("type") == "additional_tools" and isinstance(item.get("tools"), list):
            tool_set(item["tools"], param=f"input[{i}].tools", into=tools)
    return tools

# ---- tools, tool_choice, text.format -------------------------------------------------------------


def _echo_function(tool: Mapping[str, Any]) -> dict[str, Any]:
    nested = tool.get("function")
    fn: Mapping[str, Any] = nested if isinstance(nested, Mapping) else tool
    return {"type": "function", "name": fn.get("name"), "description": fn.get("description"),
            "parameters": fn.get("parameters"), "strict": fn.get("strict")}


def _echo_custom(tool: Mapping[str, Any]) -> dict[str, Any]:
    nested = tool.get("custom")
    spec: Mapping[str, Any] = nested if isinstance(nested, Mapping) else tool
    out: dict[str, Any] = {"type": "custom", "name": spec.get("name")}
    if isinstance(spec.get("description"), str):
        out["description"] = spec["description"]
    fmt = spec.get("format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "text":
        out["format"] = {"type": "text"}
    elif isinstance(fmt, Mapping) and fmt.get("type") == "grammar":
        nested_grammar = fmt.get("grammar")
        grammar: Mapping[str, Any] = nested_grammar if isinstance(nested_grammar, Mapping) else fmt
        if isinstance(grammar.get("definition"), str) and grammar.get("syntax") in ("lark", "regex"):
            out["format"] = {"type": "grammar", "syntax": grammar["syntax"], "definition": grammar["definition"]}
    return out


def echo_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The tools as the Response object lists them: those offered to the model, in their Responses shapes
    (hosted tools were dropped, so they are not listed)."""
    out: list[dict[str, Any]] = []
    for tool in tools or []:
        kind = tool.get("type")
        if kind == "function":
            out.append(_echo_function(tool))
        elif kind == "custom":
            out.append(_echo_custom(tool))
        elif kind == "namespace" and isinstance(tool.get("tools"), list):
            inner = []
            for sub in tool["tools"]:
                if isinstance(sub, Mapping) and sub.get("type") == "function":
                    inner.append({k: v for k, v in _echo_function(sub).items() if v is not None})
                elif isinstance(sub, Mapping) and sub.get("type") == "custom":
                    inner.append(_echo_custom(sub))
            out.append({"type": "namespace", "name": tool.get("name"), "description": tool.get("description") or "",
                        "tools": inner})
    return out


def echo_tool_choice(choice: str | Mapping[str, Any] | None) -> str | dict[str, Any]:
    """tool_choice as the Response object states it (chat-style named choices flattened)."""
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind in ("function", "custom") and isinstance(choice.get(kind), Mapping):
        return {"type": kind, "name": choice[kind].get("name")}
    return dict(choice)


def _flat_choice(item: Mapping[str, Any], tools: ToolSet) -> dict[str, Any]:
    kind = str(item.get("type"))
    nested = item.get(kind)
    source: Mapping[str, Any] = nested if isinstance(nested, Mapping) else item
    name = source.get("name")
    space = source.get("namespace", item.get("namespace"))
    flat = tools.flat_name(name, space if isinstance(space, str) else None, kind) if isinstance(name, str) else name
    return {"type": "function", "function": {"name": flat}}


def chat_tool_choice(choice: str | Mapping[str, Any] | None,
                     tools: ToolSet | None = None) -> str | dict[str, Any] | None:
    """tool_choice for the chat request, naming tools by their flat names (core.translate.toolset)."""
    tools = tools or ToolSet()
    if choice is None or isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind in ("function", "custom"):
        return _flat_choice(choice, tools)
    if kind == "allowed_tools":
        allowed = [_flat_choice(t, tools) for t in choice.get("tools", [])
                   if isinstance(t, Mapping) and t.get("type") in ("function", "custom")]
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": allowed}}
    # A hosted tool (web_search_preview, mcp, file_search, ...): dropped with its tool, so the model decides.
    return "auto"


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
                    model: str, stream: bool, tools: ToolSet | None = None) -> ChatCompletionRequest:
    """The chat request that answers `req`: instructions, earlier turns, then this request's items. Its tools
    are plain functions under flat names (`tools`, from `response_tools`); answers are mapped back with them."""
    tools = tools if tools is not None else response_tools(req)
    messages = items_to_messages([*history, *items], tools)
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
                         ("user", "user"), ("prompt_cache_key", "prompt_cache_key")):
        value = getattr(req, ours)
        if value is not None:
            body[theirs] = value
    if tools.functions:
        body["tools"] = tools.functions
    choice = chat_tool_choice(req.tool_choice, tools)
    if choice is not None and (tools.functions or choice == "none"):
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
        "tools": echo_tools(req.tools),
        "top_p": req.top_p,
        "truncation": req.truncation or "disabled",
        "metadata": dict(req.metadata or {}),
    }
    if req.user is not None:
        shell["user"] = req.user
    return shell

