"""Anthropic Messages requests -> the Chat Completions request the chat pipeline serves, and token counts.

Pure: pydantic, the standard library, core and errors. The answer direction (a `message` object, the SSE
events) lives in core.translate.anthropic_out and anthropic_stream; both are re-exported here, so the
routes import one module. Decisions worth knowing:
- stop_sequences are not sent upstream: cfai cuts the text itself so it can say which sequence hit;
- tool_result blocks become `tool` messages right after the assistant turn (OpenAI's order); text and
  images of the same user turn follow as a user message, and so do images inside a tool result (a chat
  `tool` message holds text only), introduced by a line naming the tool call they came from;
- system turns inside `messages` join the system prompt (open models' templates want it first);
- thinking, redacted_thinking and server tool blocks in the history are dropped (Workers AI models
  cannot read Claude's signed thinking); document blocks are a 400.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cfai_cli.core.anthropic.models import (
    Base64Source,
    CountTokensRequest,
    CustomTool,
    FileSource,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    OtherBlock,
    TextBlock,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
    ToolUseBlock,
)
from cfai_cli.core.openai.chat import ChatCompletionRequest, Message
from cfai_cli.core.tokens import TOKENS_PER_CONVERSATION, estimate_tokens, message_tokens
from cfai_cli.errors import InvalidRequest

NAME_LIMIT = 64  # a chat function name's limit; Anthropic allows 128 characters
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Blocks that only Anthropic's own servers produce or read: nothing a Workers AI model can use.
_DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking", "server_tool_use", "mcp_tool_use", "mcp_tool_result",
                             "container_upload", "tool_reference"})
DOCUMENT_ERROR = "PDF/document blocks are not supported on Workers AI; send the text of the document instead."
EMPTY_RESULT = "(no output)"  # some Workers AI templates refuse an empty tool message


@dataclass(frozen=True)
class AnthropicPlan:
    """What an Anthropic request became: the chat request, the stop sequences cfai applies itself, the
    server tool types left out, the model name the client asked for (echoed in the answer), and the chat
    function name of each tool whose Anthropic name did not fit one (`tool_names`: chat name -> Anthropic)."""

    chat: ChatCompletionRequest
    stop_sequences: tuple[str, ...]
    dropped_tools: list[str]
    model: str
    tool_names: dict[str, str] = field(default_factory=dict)

    def anthropic_name(self, chat_name: str) -> str:
        return self.tool_names.get(chat_name, chat_name)


def function_name(name: str) -> str:
    """A chat function name for an Anthropic tool name (over 64 characters: shortened, with a hash)."""
    if _FUNCTION_NAME.fullmatch(name):
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", name)[: NAME_LIMIT - 9] + "_" + digest


# ---- messages -------------------------------------------------------------------------------------


def _image_part(block: ImageBlock, param: str) -> dict[str, Any]:
    source = block.source
    if isinstance(source, FileSource):
        raise InvalidRequest("Images from Anthropic's Files API (source type 'file') are not supported on "
                             "Workers AI; send the image as base64 or a URL.", param=f"{param}.source.type",
                             code="invalid_value")
    url = f"data:{source.media_type};base64,{source.data}" if isinstance(source, Base64Source) else source.url
    return {"type": "image_url", "image_url": {"url": url}}


def _refuse_or_drop(block: OtherBlock, param: str) -> None:
    """Other block types: documents are refused; server-side and thinking blocks are dropped."""
    if block.type == "document":
        raise InvalidRequest(DOCUMENT_ERROR, param=f"{param}.type", code="invalid_value")
    if block.type in _DROPPED_BLOCKS or block.type.endswith("_tool_result"):
        return
    raise InvalidRequest(f"Content blocks of type '{block.type}' are not supported on Workers AI.",
                         param=f"{param}.type", code="invalid_value")


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """All-text content as one string (what every Workers AI template reads), else the parts."""
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _tool_result(block: ToolResultBlock, param: str, images: list[dict[str, Any]]) -> dict[str, Any]:
    """The `tool` message for a tool_result; its images are added to `images` (a later user message)."""
    texts: list[str] = []
    if isinstance(block.content, str):
        texts.append(block.content)
    for j, part in enumerate(block.content if isinstance(block.content, list) else []):
        where = f"{param}.content[{j}]"
        if isinstance(part, TextBlock):
            texts.append(part.text)
        elif isinstance(part, ImageBlock):
            if not images or images[-1].get("text") != _images_note(block.tool_use_id):
                images.append({"type": "text", "text": _images_note(block.tool_use_id)})
            images.append(_image_part(part, where))
        else:
            _refuse_or_drop(part, where)
    text = "\n".join(texts) or EMPTY_RESULT
    if block.is_error:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _images_note(call_id: str) -> str:
    return f"(Images returned by tool call {call_id}:)"


def _user_turn(message: MessageParam, param: str) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    result_images: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        where = f"{param}.content[{j}]"
        if isinstance(block, ToolResultBlock):
            tools.append(_tool_result(block, where, result_images))
        elif isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block, where))
        elif isinstance(block, ToolUseBlock):
            raise InvalidRequest("tool_use blocks belong in assistant turns.", param=f"{where}.type",
                                 code="invalid_value")
        else:
            _refuse_or_drop(block, where)
    out = tools
    if parts or result_images:
        out.append({"role": "user", "content": _user_content(result_images + parts)})
    return out


def _assistant_turn(message: MessageParam, param: str) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"role": "assistant", "content": message.content}]
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        where = f"{param}.content[{j}]"
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            calls.append({"id": block.id, "type": "function", "function": {
                "name": function_name(block.name), "arguments": json.dumps(block.input, ensure_ascii=False)}})
        elif isinstance(block, OtherBlock):
            _refuse_or_drop(block, where)
        else:
            raise InvalidRequest(f"{block.type} blocks belong in user turns.", param=f"{where}.type",
                                 code="invalid_value")
    if not texts and not calls:
        return []  # only thinking: nothing a Workers AI model can read
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    return [out]


def _system_text(content: str | Sequence[Any]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.text for b in content if isinstance(b, TextBlock))


def chat_messages(req: CountTokensRequest) -> list[dict[str, Any]]:
    """The chat messages for an Anthropic request's system prompt and turns.

    System turns inside `messages` (Claude Code sends one after the user's turn) join the system prompt, in
    order, as one leading system message: many open models' chat templates refuse a system message anywhere
    but first, or require user and assistant turns to alternate."""
    system = [_system_text(req.system)] if req.system else []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(req.messages):
        param = f"messages[{i}]"
        if message.role == "system":
            system.append(_system_text(message.content))
        elif message.role == "user":
            out.extend(_user_turn(message, param))
        else:
            out.extend(_assistant_turn(message, param))
    system = [text for text in system if text]
    if system:
        out.insert(0, {"role": "system", "content": "\n\n".join(system)})
    if not out:
        raise InvalidRequest("The messages hold nothing a model can read (only thinking or server tool blocks).",
                             param="messages", code="invalid_value")
    return out


# ---- tools ----------------------------------------------------------------------------------------


def chat_tools(req: CountTokensRequest) -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
    """(function tools, server tool types left out, chat name -> Anthropic name where they differ)."""
    functions: list[dict[str, Any]] = []
    dropped: list[str] = []
    names: dict[str, str] = {}
    for tool in req.tools or []:
        if not isinstance(tool, CustomTool):
            if tool.type not in dropped:
                dropped.append(tool.type)
            continue
        name = function_name(tool.name)
        if name != tool.name:
            names[name] = tool.name
        functions.append({"type": "function", "function": {
            # Workers AI's tool schemas demand a description.
            "name": name, "description": tool.description or tool.name, "parameters": tool.input_schema}})
    return functions, dropped, names


def _tool_choice(req: CountTokensRequest, offered: bool) -> tuple[Any, bool | None]:
    """(chat tool_choice, parallel_tool_calls) for Anthropic's tool_choice."""
    choice = req.tool_choice
    if choice is None or not offered:
        return None, None
    parallel = False if getattr(choice, "disable_parallel_tool_use", None) else None
    if isinstance(choice, ToolChoiceNone):
        return "none", None
    if isinstance(choice, ToolChoiceAny):
        return "required", parallel
    if isinstance(choice, ToolChoiceTool):
        if any(t.name == choice.name for t in req.tools or [] if not isinstance(t, CustomTool)):
            return "auto", parallel  # a server tool, left out: the model decides among what is left
        if not any(t.name == choice.name for t in req.tools or [] if isinstance(t, CustomTool)):
            raise InvalidRequest(f"tool_choice names '{choice.name}', which is not in 'tools'.",
                                 param="tool_choice.name", code="invalid_value")
        return {"type": "function", "function": {"name": function_name(choice.name)}}, parallel
    assert isinstance(choice, ToolChoiceAuto)
    return "auto", parallel


def _reasoning_effort(req: MessagesRequest) -> str | None:
    """Extended thinking's budget as a reasoning effort; disabled or absent: the model's default."""
    thinking = req.thinking
    if thinking is None or thinking.type != "enabled":
        return None
    budget = thinking.budget_tokens or 0
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def to_chat_request(req: MessagesRequest, *, stream: bool) -> AnthropicPlan:
    """The chat request for an Anthropic Messages request, and what the answer needs to know."""
    functions, dropped, names = chat_tools(req)
    choice, parallel = _tool_choice(req, bool(functions))
    body: dict[str, Any] = {
        "model": req.model,
        "messages": chat_messages(req),
        "max_tokens": req.max_tokens,  # always set: native Workers AI models stop at 256 otherwise
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if functions and choice != "none":
        body["tools"] = functions
    if choice is not None and choice != "none":
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    for key in ("temperature", "top_p"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    effort = _reasoning_effort(req)
    if effort:
        body["reasoning_effort"] = effort
    user = (req.metadata or {}).get("user_id")
    if isinstance(user, str) and user:
        body["user"] = user
    chat = ChatCompletionRequest.model_validate(body)
    stops = tuple(s for s in req.stop_sequences or () if s)
    return AnthropicPlan(chat=chat, stop_sequences=stops, dropped_tools=dropped, model=req.model, tool_names=names)


# ---- token counting -------------------------------------------------------------------------------


def count_input_tokens(req: CountTokensRequest | MessagesRequest, model_id: str, *,
                       count: Callable[[str], int] = estimate_tokens) -> int:
    """Input tokens of a request as /v1/tokenize counts a chat: each message's text (and tool calls) by
    `count` (a tokenizer for `model_id`, or the estimator) plus the chat template, and the tool
    definitions as the JSON the model reads. Images are not counted (their cost depends on the model)."""
    del model_id  # the caller picks `count` for the model; kept so the signature says what is counted
    total = TOKENS_PER_CONVERSATION
    for raw in chat_messages(req):
        total += message_tokens(Message.model_validate(raw), count)
    functions, _, _ = chat_tools(req)
    if functions:
        total += count(json.dumps([f["function"] for f in functions], ensure_ascii=False))
    return total


from cfai_cli.core.translate.anthropic_out import to_message  # noqa: E402  (re-exported: see the docstring)
from cfai_cli.core.translate.anthropic_stream import MessageStream  # noqa: E402

__all__ = ["AnthropicPlan", "MessageStream", "count_input_tokens", "function_name", "to_chat_request", "to_message"]
