"""Recovering a forced tool call that a model wrote as JSON text instead of a tool call.

Pure: standard library only. gpt-oss sometimes answers a forced tool call with the call as JSON in
`content` and no `tool_calls` (reference §2.5, cloudflare/ai#560). Like Cloudflare's own client, we
salvage it only when the request forced a tool, so ordinary JSON answers are never misread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cfai_cli.core import jsonfast
from cfai_cli.core.workers.chat import ParsedToolCall


def strip_fence(text: str) -> str:
    body = text.strip()
    if body.startswith("```") and body.endswith("```"):
        body = body[3:-3]
        body = body.split("\n", 1)[1] if body.startswith(("json", "JSON")) and "\n" in body else body
    return body.strip()


def _one(item: Any, names: Sequence[str]) -> ParsedToolCall | None:
    if not isinstance(item, dict):
        return None
    name = item.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    if "arguments" in item or "parameters" in item:
        args = item.get("arguments", item.get("parameters"))
    else:
        args = {k: v for k, v in item.items() if k != "name"}
    text = args if isinstance(args, str) else json.dumps(args if args is not None else {}, ensure_ascii=False)
    return ParsedToolCall(name=name, arguments=text)


def salvage_tool_calls(text: str | None, tool_names: Sequence[str]) -> list[ParsedToolCall]:
    """Tool calls found in `text` naming one of `tool_names`, or [] when the text is not such a call."""
    if not text or not tool_names:
        return []
    try:
        data = jsonfast.loads_text(strip_fence(text))
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    calls = [_one(item, tool_names) for item in items]
    if not calls or any(call is None for call in calls):
        return []
    return [call for call in calls if call is not None]
