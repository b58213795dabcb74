"""Deterministic values from JSON Schemas, and tool definitions read from any of the shapes clients send.

Imports only the standard library and the emulator's wire helpers. Used for JSON mode answers and for
the arguments of emulated tool calls: every property (required or not) gets a type-appropriate sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cfai_cli.emulator.wire import bad_input

# Names that get a meaningful sample, so emulated tool calls read like real ones ("London" for a weather tool).
_NAMED_SAMPLES: dict[str, str] = {
    "location": "London", "city": "London", "place": "London", "town": "London", "destination": "London",
    "country": "United Kingdom", "unit": "celsius", "units": "celsius", "language": "en", "lang": "en",
    "date": "2026-01-01", "email": "user@example.com", "url": "https://example.com", "uri": "https://example.com",
    "name": "Ada Lovelace", "timezone": "Europe/London", "currency": "GBP",
}
_FORMAT_SAMPLES: dict[str, str] = {
    "date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z", "time": "00:00:00", "email": "user@example.com",
    "uri": "https://example.com", "url": "https://example.com", "uuid": "00000000-0000-4000-8000-000000000000",
}
_MAX_DEPTH = 8


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _type_of(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


def sample_value(schema: Any, name: str = "", *, root: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A deterministic value that satisfies the common parts of `schema` (enum, const, type, properties, items)."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return "example"
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            choice = next((o for o in options if isinstance(o, Mapping) and o.get("type") != "null"), options[0])
            return sample_value(choice, name, root=root, depth=depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return {}
        return {key: sample_value(spec, key, root=root, depth=depth + 1) for key, spec in props.items()}
    if kind == "array":
        count = schema.get("minItems")
        count = count if isinstance(count, int) and 1 <= count <= 10 else 1
        item = sample_value(schema.get("items", {}), name, root=root, depth=depth + 1)
        return [item] * count
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = low if isinstance(low, int | float) and not isinstance(low, bool) and low > 1 else 1
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMAT_SAMPLES:
        return _FORMAT_SAMPLES[fmt]
    return _NAMED_SAMPLES.get(name.lower(), "example")


# ---- tools -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolDef:
    """A tool the request offers: its name, description and JSON Schema parameters."""

    name: str
    description: str | None
    parameters: Mapping[str, Any]

    def arguments(self) -> dict[str, Any]:
        value = sample_value(self.parameters)
        return value if isinstance(value, dict) else {}


def _function_of(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    fn = raw.get("function")
    return fn if isinstance(fn, Mapping) else raw


def read_tool(raw: Any, where: str) -> ToolDef:
    """Flat `{name, …}`, OpenAI `{type, function: {…}}` or Responses `{type, name, …}` -> one shape."""
    if not isinstance(raw, Mapping):
        raise bad_input(f"must be object at '{where}'")
    fn = _function_of(raw)
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise bad_input(f"required properties at '{where}' are 'name'")
    params = fn.get("parameters")
    description = fn.get("description")
    return ToolDef(name, description if isinstance(description, str) else None,
                   params if isinstance(params, Mapping) else {})


def check_native_tool(raw: Mapping[str, Any], where: str) -> None:
    """What the strict llama/mistral tool schemas demand (reference §2.5), with their error wording."""
    fn = _function_of(raw)
    fn_where = f"{where}/function" if fn is not raw else where
    if not isinstance(fn.get("description"), str):
        raise bad_input(f"required properties at '{fn_where}' are 'description'")
    params = fn.get("parameters")
    if not isinstance(params, Mapping):
        raise bad_input(f"required properties at '{fn_where}' are 'parameters'")
    for key in ("type", "properties"):
        if key not in params:
            raise bad_input(f"required properties at '{fn_where}/parameters' are '{key}'")
    props = params["properties"]
    if not isinstance(props, Mapping):
        raise bad_input(f"must be object at '{fn_where}/parameters/properties'")
    for prop_name, spec in props.items():
        for key in ("type", "description"):
            if not isinstance(spec, Mapping) or key not in spec:
                raise bad_input(f"required properties at '{fn_where}/parameters/properties/{prop_name}' are '{key}'")


def choose_tool(tools: list[ToolDef], tool_choice: Any) -> ToolDef | None:
    """The tool the emulator calls: the one `tool_choice` names, else the first (None for "none")."""
    if not tools or tool_choice == "none":
        return None
    wanted: str | None = None
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function")
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            wanted = fn["name"]
        elif isinstance(tool_choice.get("name"), str):
            wanted = tool_choice["name"]
        allowed = tool_choice.get("allowed_tools")
        if isinstance(allowed, Mapping) and isinstance(allowed.get("tools"), list):
            names = [read_tool(t, "/tool_choice/allowed_tools/tools").name for t in allowed["tools"]]
            return next((t for t in tools if t.name in names), None)
    if wanted is None:
        return tools[0]
    for tool in tools:
        if tool.name == wanted:
            return tool
    raise bad_input(f"tool_choice names the function '{wanted}', which is not in 'tools'")
