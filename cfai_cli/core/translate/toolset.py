"""Agent clients' tool sets -> the plain function tools a Workers AI model can call, and the way back.

Pure: the standard library, cfai_cli.errors. Chat and Responses requests both come through `tool_set()`:
hosted tools with no Workers AI meaning (web_search, file_search, mcp, ...) are dropped and reported;
`namespace` tools are flattened to unique names (`crm__lookup`); `custom` tools (free-form text, perhaps
with a grammar: Codex's apply_patch) become a function with one string parameter `input`. `origin()` maps
a name the model called back to what the client defined; `choose()` applies `tool_choice` to the set.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cfai_cli.core import jsonfast
from cfai_cli.errors import InvalidRequest

NAME_LIMIT = 64  # what Chat Completions (and so every Workers AI model) takes for a function name
GRAMMAR_LIMIT = 4000  # characters of a custom tool's grammar kept in the description
SEPARATOR = "__"
# Patterns compiled on first use (re's cache), not at import, where every one-shot command paid for them.
_UNSAFE = r"[^A-Za-z0-9_.:-]"
_FUNCTION_NAME = r"[A-Za-z0-9_.:-]{1,128}"  # what OpenAI takes (Responses allows 128 characters)
INPUT_DESCRIPTION = "The complete input for this tool, as free-form text (not JSON)."


@dataclass(frozen=True, slots=True)
class ToolOrigin:
    """What the client defined behind one flat function name."""

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


@dataclass(slots=True)
class ToolSet:
    """The function tools to offer the model (`functions`, chat shape, flat names), where each name came
    from, and the hosted tool types left out (`dropped`, in request order, each once)."""

    functions: list[dict[str, Any]] = field(default_factory=list)
    origins: dict[str, ToolOrigin] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    @property
    def identity(self) -> bool:
        """True when every tool is a plain function under its own name (nothing to map back)."""
        return all(o.kind == "function" and o.namespace is None and o.name == flat for flat, o in self.origins.items())

    def origin(self, flat: str) -> ToolOrigin:
        return self.origins.get(flat) or ToolOrigin("function", flat)

    def flat_name(self, name: str, namespace: str | None = None, kind: str | None = None) -> str:
        """The flat name for a call the client replays: exact match first, then the inner name if unique."""
        if namespace is None and name in self.origins and kind in (None, self.origins[name].kind):
            return name
        matches = [flat for flat, o in self.origins.items()
                   if o.name == name and (namespace is None or o.namespace == namespace)
                   and (kind is None or o.kind == kind)]
        if len(matches) == 1 or (matches and namespace is not None):
            return matches[0]
        return f"{namespace}{SEPARATOR}{name}" if namespace else name

    def chat_name(self, flat: str) -> str:
        """The name a chat client sees: the inner name of a namespaced tool when no other tool has it."""
        origin = self.origin(flat)
        same = [o for o in self.origins.values() if o.name == origin.name]
        return origin.name if len(same) == 1 else flat


# ---- the tool list -------------------------------------------------------------------------------


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def _name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise _missing(param)
    return value


def _flat(wanted: str, taken: Mapping[str, ToolOrigin]) -> str:
    """A unique, valid function name, as close to `wanted` as the 64-character limit allows."""
    name = re.sub(_UNSAFE, "_", wanted)
    if len(name) <= NAME_LIMIT and name not in taken:
        return name
    digest = hashlib.sha1(wanted.encode()).hexdigest()
    for i in range(len(taken) + 1):
        suffix = f"_{digest[:8]}" + (f"_{i}" if i else "")
        candidate = name[: NAME_LIMIT - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: a free name always exists")  # pragma: no cover


def grammar_text(fmt: Any) -> str:
    """The grammar of a custom tool's `format` (chat nests it under `grammar`), shortened if huge."""
    if not isinstance(fmt, Mapping) or fmt.get("type") != "grammar":
        return ""
    nested = fmt.get("grammar")
    inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else fmt
    definition, syntax = inner.get("definition"), inner.get("syntax")
    if not isinstance(definition, str) or not definition:
        return ""
    if len(definition) > GRAMMAR_LIMIT:
        definition = definition[:GRAMMAR_LIMIT] + "\n... (grammar shortened)"
    label = f"{syntax} grammar" if isinstance(syntax, str) and syntax else "grammar"
    return f"The input must follow this {label}:\n{definition}"


def _custom_function(flat: str, description: Any, fmt: Any) -> dict[str, Any]:
    text = description if isinstance(description, str) and description else "A tool that takes free-form text."
    grammar = grammar_text(fmt)
    return {"type": "function", "function": {
        "name": flat,
        "description": f"{text}\n\n{grammar}" if grammar else text,
        "parameters": {"type": "object", "properties": {"input": {"type": "string", "description": INPUT_DESCRIPTION}},
                       "required": ["input"]},
    }}


def _function(flat: str, fn: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": flat}
    for key in ("description", "parameters", "strict"):
        if fn.get(key) is not None:
            out[key] = fn[key]
    return {"type": "function", "function": out}


def _add(tools: ToolSet, item: Mapping[str, Any], param: str, namespace: str | None, about: str = "") -> None:
    """Add one tool; `about` is the description of the namespace it is in, for members that have none."""
    kind = item.get("type")
    if kind == "function":
        nested = item.get("function")
        fn: Mapping[str, Any] = nested if isinstance(nested, Mapping) else item  # chat shape, else Responses'
        where = f"{param}.function.name" if fn is not item else f"{param}.name"
        name = _name(fn.get("name"), where)
        if not re.fullmatch(_FUNCTION_NAME, name):
            raise InvalidRequest(f"Invalid value for '{where}': a function name holds only letters, digits, '_', "
                                 f"'-', '.' and ':', at most 128 characters (got {json.dumps(name)[:80]}).",
                                 param=where, code="invalid_value")
        flat = _flat(f"{namespace}{SEPARATOR}{name}" if namespace else name, tools.origins)
        tools.origins[flat] = ToolOrigin("function", name, namespace)
        tools.functions.append(_function(flat, fn))
        if about and not fn.get("description"):
            tools.functions[-1]["function"]["description"] = f"{name}: {about}"
    elif kind == "custom":
        nested = item.get("custom")
        spec: Mapping[str, Any] = nested if isinstance(nested, Mapping) else item
        name = _name(spec.get("name"), f"{param}.custom.name" if spec is not item else f"{param}.name")
        flat = _flat(f"{namespace}{SEPARATOR}{name}" if namespace else name, tools.origins)
        tools.origins[flat] = ToolOrigin("custom", name, namespace)
        tools.functions.append(_custom_function(flat, spec.get("description"), spec.get("format")))
    elif kind == "namespace" and namespace is None:
        space = _name(item.get("name"), f"{param}.name")
        inner = item.get("tools")
        if not isinstance(inner, list) or not inner:
            raise _missing(f"{param}.tools")
        for j, sub in enumerate(inner):
            if not isinstance(sub, Mapping) or sub.get("type") not in ("function", "custom"):
                raise InvalidRequest(f"Invalid value for '{param}.tools[{j}]': a namespace holds function and "
                                     "custom tools only.", param=f"{param}.tools[{j}].type", code="invalid_value")
            note = item.get("description")
            _add(tools, sub, f"{param}.tools[{j}]", space, note if isinstance(note, str) else "")
    elif isinstance(kind, str) and kind:
        if kind not in tools.dropped:
            tools.dropped.append(kind)
    else:
        raise _missing(f"{param}.type")


def tool_set(raw: Sequence[Any] | None, *, param: str = "tools", into: ToolSet | None = None) -> ToolSet:
    """Normalise a request's `tools` (chat or Responses shapes, mixed freely); `into` extends a set already
    made (Responses `additional_tools` items add tools to the top-level ones)."""
    tools = into if into is not None else ToolSet()
    for i, item in enumerate(raw or []):
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"Invalid value for '{param}[{i}]': a tool must be an object.",
                                 param=f"{param}[{i}]", code="invalid_value")
        _add(tools, item, f"{param}[{i}]", None)
    return tools


# ---- tool_choice ---------------------------------------------------------------------------------


Mode = Literal["auto", "none", "required"]


@dataclass(frozen=True, slots=True)
class ChoicePlan:
    """`tool_choice` applied to a ToolSet: what to offer, the mode to ask for, and which calls are forced."""

    offered: list[dict[str, Any]]
    mode: Mode | None  # None: the client said nothing (the model decides)
    named: str | None = None  # the one flat name a named choice forces
    forced: tuple[str, ...] = ()  # flat names the answer must call one of (empty unless forced)


def _unknown(name: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"tool_choice names '{name}', which is not in 'tools'.", param=param, code="invalid_value")


def _choice_name(choice: Mapping[str, Any], kind: str) -> tuple[str | None, str | None]:
    """(name, namespace) of a named choice in chat (`{function: {name}}`) or Responses (`{name}`) shape."""
    nested = choice.get(kind)
    source = nested if isinstance(nested, Mapping) else choice
    name, space = source.get("name"), source.get("namespace", choice.get("namespace"))
    return (name if isinstance(name, str) else None), (space if isinstance(space, str) else None)


def _find(tools: ToolSet, name: str | None, namespace: str | None, kind: str, param: str) -> str:
    if not name:
        raise _missing(f"{param}.name")
    flat = tools.flat_name(name, namespace, kind)
    if flat not in tools.origins or tools.origins[flat].kind != kind:
        raise _unknown(name, param)
    return flat


def choose(tools: ToolSet, choice: str | Mapping[str, Any] | None, *, param: str = "tool_choice") -> ChoicePlan:
    """Which tools to offer for `choice`. A choice of a hosted tool (web_search, mcp, ...) cannot be honoured
    once that tool is dropped, so it becomes "auto" over what is left."""
    offered = tools.functions
    if choice is None or choice == "auto":
        return ChoicePlan(offered, None if choice is None else "auto")
    if choice == "none":
        return ChoicePlan([], "none")
    if choice == "required":
        return ChoicePlan(offered, "required", forced=tuple(_names(offered)))
    if isinstance(choice, str):
        raise InvalidRequest(f"Invalid value for '{param}': expected 'none', 'auto', 'required' or an object.",
                             param=param, code="invalid_value")
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name, space = _choice_name(choice, kind)
        flat = _find(tools, name, space, kind, param)
        chosen = [t for t in offered if t["function"]["name"] == flat]
        return ChoicePlan(chosen, "required", named=flat, forced=(flat,))
    if kind == "allowed_tools":
        nested = choice.get("allowed_tools")
        inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else choice
        allowed: set[str] = set()
        for item in inner.get("tools") or []:
            if isinstance(item, Mapping) and item.get("type") in ("function", "custom"):
                name, space = _choice_name(item, str(item["type"]))
                if name:
                    allowed.add(tools.flat_name(name, space, str(item["type"])))
        chosen = [t for t in offered if t["function"]["name"] in allowed]
        required = inner.get("mode") == "required"
        return ChoicePlan(chosen, "required" if required else "auto",
                          forced=tuple(_names(chosen)) if required else ())
    return ChoicePlan(offered, "auto")


def _names(functions: Sequence[Mapping[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in functions]


# ---- the way back --------------------------------------------------------------------------------


def custom_input(arguments: str) -> str:
    """The free-form input of a custom tool from the arguments the model gave its function stand-in."""
    try:
        value = jsonfast.loads_text(arguments)
    except ValueError:
        return arguments  # the model wrote the input itself: take it as it is
    if isinstance(value, Mapping):
        given = value.get("input")
        if isinstance(given, str):
            return given
        strings = [v for v in value.values() if isinstance(v, str)]
        if len(value) == 1 and strings:
            return strings[0]
    return value if isinstance(value, str) else arguments


def custom_arguments(text: str) -> str:
    """The function stand-in's arguments for a custom tool's input replayed in history."""
    return json.dumps({"input": text}, ensure_ascii=False)
