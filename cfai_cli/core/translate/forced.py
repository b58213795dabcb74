"""A forced tool call that a model answered in text: the one constrained retry, as pure functions.

Pure: the standard library, cfai_cli.core. When `tool_choice` forces a call ("required", a named function,
`allowed_tools` in required mode) and the answer has none, even after salvage (core.translate.salvage), the
service asks once more: the same messages plus a short system instruction naming the function(s), no tools,
and JSON mode with a schema: the function's parameters for one forced function, else an `anyOf` of
`{name, arguments}` objects. The JSON that comes back becomes the tool call (`calls_from_retry`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cfai_cli.core import jsonfast
from cfai_cli.core.translate.chat import WorkersChatCall
from cfai_cli.core.translate.salvage import salvage_tool_calls, strip_fence
from cfai_cli.core.workers.chat import ParsedToolCall

# Keys of the first body the retry must not carry: it offers no tools and answers whole.
_LEFT_OUT = ("tools", "tool_choice", "parallel_tool_calls", "stream", "stream_options", "response_format", "stop",
             "n")


def _parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(tool["function"].get("parameters") or {})
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return params


def retry_schema(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON Schema the retry's answer must follow."""
    if len(tools) == 1:
        return _parameters(tools[0])
    return {"type": "object", "anyOf": [
        {"type": "object", "properties": {"name": {"type": "string", "const": t["function"]["name"]},
                                          "arguments": _parameters(t)},
         "required": ["name", "arguments"]}
        for t in tools]}


def instruction(tools: Sequence[Mapping[str, Any]]) -> str:
    names = [t["function"]["name"] for t in tools]
    if len(names) == 1:
        return (f"You must call the function `{names[0]}` now. Reply with only a JSON object of its arguments, "
                "nothing else.")
    listed = ", ".join(f"`{n}`" for n in names)
    return (f"You must call one of the functions {listed} now. Reply with only a JSON object "
            '{"name": <the function>, "arguments": {<its arguments>}}, nothing else.')


def retry_body(call: WorkersChatCall) -> dict[str, Any] | None:
    """The /ai/run body that asks again for the forced call; None when there is nothing to ask for."""
    forced = set(call.forced_tools)
    tools = [t for t in call.body.get("tools") or [] if t["function"]["name"] in forced]
    if not tools:
        return None
    body = {k: v for k, v in call.body.items() if k not in _LEFT_OUT}
    body["messages"] = [*call.body["messages"], {"role": "system", "content": instruction(tools)}]
    schema = retry_schema(tools)
    if call.chat_dialect:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}
    else:
        # Native models take the bare schema (reference §2.4).
        body["response_format"] = {"type": "json_schema", "json_schema": {**schema, "title": "tool_call"}}
    return body


def calls_from_retry(text: str | None, forced: Sequence[str]) -> list[ParsedToolCall]:
    """The tool call(s) in the retry's JSON answer, or [] when it holds none."""
    if not text or not forced:
        return []
    if len(forced) > 1:
        return salvage_tool_calls(text, forced)
    try:
        data = jsonfast.loads_text(strip_fence(text))
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    if data.get("name") == forced[0] and isinstance(data.get("arguments"), dict | str):
        return salvage_tool_calls(text, forced)  # the model wrapped the call itself
    return [ParsedToolCall(name=forced[0], arguments=json.dumps(data, ensure_ascii=False))]
