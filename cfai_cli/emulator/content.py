"""What the emulator answers, independent of dialect: the canned text, reasoning, tool calls, JSON values.

Imports only the standard library and the emulator's own modules. `plan_answer` decides the whole answer
(pieces of reasoning and content, or one tool call, and the finish reason); the dialect modules only render it.
Answers are a pure function of the request, so the same input always gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cfai_cli.emulator.schema import ToolDef, choose_tool, sample_value
from cfai_cli.emulator.wire import count_words, pieces

QUOTE_CHARS = 200

# Deterministic triggers in the last user message, for testing clients' and cfai's tool handling end to end.
TEXT_INSTEAD = "[emulator:text]"  # native models answer in text even when a tool call is forced
CALL_AS_TEXT = "[emulator:call-as-text]"  # native models write the tool call as JSON text instead
NO_JSON = "[emulator:no-json]"  # JSON mode fails: native models 5006 "JSON Mode couldn't be met", others plain text
SLOW = "[emulator:slow]"  # streams wait SLOW_SECONDS before each event: a person can Ctrl-C mid-answer
SLOW_SECONDS = 0.1
PARALLEL = "[emulator:parallel]"  # call every offered tool at once (chat dialect: unless parallel_tool_calls false)
# `[emulator:call=NAME]` calls the tool NAME (or the one whose flat name ends in `__NAME`) instead of the first;
# `[emulator:args={...}]` gives the call these JSON arguments instead of sample values. Together they drive
# one real call of an agent's tool (Codex: `[emulator:call=exec_command] [emulator:args={"cmd": "ls"}]`).
CALL = "[emulator:call="
ARGS = "[emulator:args="


@dataclass(slots=True)
class Conversation:
    """The parts of the input the canned answer depends on."""

    last_role: str | None = None
    user_text: str = ""
    has_image: bool = False
    tool_name: str | None = None
    tool_result: str | None = None
    prompt_tokens: int = 0


def content_text(content: Any) -> tuple[str, bool]:
    """(text, has_image) of a message content: a string, a list of parts, or a single part object."""
    if isinstance(content, str):
        return content, False
    parts = [content] if isinstance(content, Mapping) else content if isinstance(content, list) else []
    texts: list[str] = []
    image = False
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        if part.get("type") in ("image_url", "input_image", "image"):
            image = True
    return " ".join(texts), image


def read_messages(messages: Sequence[Mapping[str, Any]]) -> Conversation:
    conv = Conversation()
    call_names: dict[str, str] = {}
    for message in messages:
        text, image = content_text(message.get("content"))
        conv.prompt_tokens += count_words(text)
        for call in message.get("tool_calls") or []:
            if isinstance(call, Mapping):
                fn = call.get("function")
                fn = fn if isinstance(fn, Mapping) else call
                if isinstance(call.get("id"), str) and isinstance(fn.get("name"), str):
                    call_names[call["id"]] = fn["name"]
        role = message.get("role")
        if role in ("system", "developer") and conv.last_role is not None:
            continue  # a note to the model between turns (Claude Code sends one after the user's): not a turn
        conv.last_role = role if isinstance(role, str) else None
        if role == "user":
            conv.user_text, conv.has_image = text, image
            conv.tool_name = conv.tool_result = None
        elif role in ("tool", "function"):
            name = message.get("name") or call_names.get(str(message.get("tool_call_id")))
            conv.tool_name = name if isinstance(name, str) else None
            conv.tool_result = text
    return conv


def read_prompt(prompt: str) -> Conversation:
    return Conversation(last_role="user", user_text=prompt, prompt_tokens=count_words(prompt))


def quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= QUOTE_CHARS else flat[:QUOTE_CHARS].rstrip() + "..."


def answer_text(model: str, conv: Conversation) -> str:
    """The canned answer: obviously not a real model, at least ~20 tokens so streams show many chunks."""
    head = f"[offline] cfai's built-in emulator answering {model}."
    if conv.tool_result is not None:
        tool = f"The tool {conv.tool_name}" if conv.tool_name else "The tool"
        return (f"{head} No real model ran, so this canned answer only repeats the result. "
                f"{tool} returned: {quote(conv.tool_result) or '(nothing)'}")
    image = " You sent an image, which the emulator does not look at." if conv.has_image else ""
    return (f"{head} No real model ran; this canned answer is the same every time.{image} "
            f"You said: {quote(conv.user_text) or '(nothing)'}")


def reasoning_text(conv: Conversation, tool: ToolDef | None) -> str:
    if tool is not None:
        return f"The user asked something the {tool.name} tool can answer, so I will call it with sample arguments."
    if conv.tool_result is not None:
        return "A tool answered. I am the offline emulator, so I will repeat its result as my canned reply."
    words = count_words(conv.user_text)
    return (f"The user wrote {words} word{'' if words == 1 else 's'}. I am the offline emulator, so I will reply "
            "with my deterministic canned answer.")


def json_value(model: str, conv: Conversation, schema: Mapping[str, Any] | None) -> Any:
    if schema:
        return sample_value(schema)
    return {"answer": answer_text(model, conv), "offline": True}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the canned answer makes: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        # Default separators keep spaces, so the JSON splits into several stream fragments.
        return json.dumps(self.arguments, ensure_ascii=False)

    @property
    def tokens(self) -> int:
        return 1 + len(pieces(self.arguments_json))


@dataclass(slots=True)
class Plan:
    """A canned answer before it is sent: reasoning, content and tool calls, each in pieces."""

    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    truncated: bool = False
    json_value: Any = None  # JSON mode: the whole value, before any truncation

    @property
    def completion_tokens(self) -> int:
        return len(self.reasoning) + len(self.content) + sum(call.tokens for call in self.tool_calls)

    @property
    def finish_reason(self) -> Literal["stop", "length", "tool_calls"]:
        if self.tool_calls:
            return "tool_calls"
        return "length" if self.truncated else "stop"


def _named_tool(tools: list[ToolDef], said: str) -> ToolDef | None:
    """The tool a CALL trigger names: exact name first, then the one flat name ending in `__NAME`."""
    start = said.find(CALL)
    end = said.find("]", start)
    if start < 0 or end < 0:
        return None
    name = said[start + len(CALL):end].strip()
    exact = [t for t in tools if t.name == name]
    suffixed = [t for t in tools if t.name.endswith(f"__{name}")]
    found = exact or suffixed
    return found[0] if len(found) == 1 else None


def _given_arguments(said: str) -> dict[str, Any] | None:
    """The JSON object an ARGS trigger holds (raw_decode: it may contain brackets), or None."""
    start = said.find(ARGS)
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(said, start + len(ARGS))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


def plan_answer(
    model: str,
    conv: Conversation,
    *,
    tools: list[ToolDef],
    tool_choice: Any = None,
    json_mode: bool = False,
    schema: Mapping[str, Any] | None = None,
    reasoning: Literal["none", "field", "tags"] = "none",
    max_tokens: int | None = None,
    stop: Sequence[str] = (),
    native: bool = False,
    parallel: bool = True,
) -> Plan:
    """The whole answer, cut at `max_tokens` pieces (reasoning spends the budget first, as on the real models).

    Tools: the one `tool_choice` names, else the one a CALL trigger names, else the first (every one with
    PARALLEL), when the user spoke last. Native models honour `tool_choice` except with the TEXT_INSTEAD and
    CALL_AS_TEXT triggers.
    """
    said = conv.user_text
    tool = choose_tool(tools, tool_choice) if conv.last_role == "user" else None
    if tool is not None and not isinstance(tool_choice, Mapping):
        tool = _named_tool(tools, said) or tool
    given = _given_arguments(said) if tool is not None else None

    def arguments(t: ToolDef) -> dict[str, Any]:
        return given if given is not None and t is tool else t.arguments()

    as_text: str | None = None
    if tool is not None and native and TEXT_INSTEAD in said:
        tool = None
    elif tool is not None and native and CALL_AS_TEXT in said:
        as_text = json.dumps({"name": tool.name, "arguments": arguments(tool)}, ensure_ascii=False)
        tool = None
    chosen = [tool] if tool is not None else []
    if tool is not None and PARALLEL in said and parallel and not isinstance(tool_choice, Mapping):
        chosen = list(tools)
    if json_mode and NO_JSON in said and not native:
        json_mode = False  # a chat-dialect model that ignores response_format
    thought = pieces(reasoning_text(conv, tool)) if reasoning != "none" else []
    plan = Plan()
    if chosen:
        plan.reasoning = thought
        plan.tool_calls = [ToolCall(t.name, arguments(t)) for t in chosen]
    else:
        if as_text is not None:
            text = as_text
        elif json_mode:
            plan.json_value = json_value(model, conv, schema)
            text = json.dumps(plan.json_value, ensure_ascii=False)
        else:
            text = _cut_at_stop(answer_text(model, conv), stop)
        if reasoning == "tags":
            # Native reasoning models inline their thoughts before the answer (reference §2.8).
            plan.content = pieces("<think>\n" + "".join(thought) + "\n</think>\n\n" + text)
        else:
            plan.reasoning, plan.content = thought, pieces(text)
    if max_tokens is None:
        return plan
    if plan.tool_calls:
        # A tool call is emitted whole (never cut), unless the budget ran out while still thinking.
        if len(plan.reasoning) >= max_tokens:
            plan.reasoning, plan.tool_calls, plan.truncated = plan.reasoning[:max_tokens], [], True
    elif len(plan.reasoning) + len(plan.content) > max_tokens:
        plan.truncated = True
        plan.reasoning = plan.reasoning[:max_tokens]
        plan.content = plan.content[: max_tokens - len(plan.reasoning)]
    return plan
