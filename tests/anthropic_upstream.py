"""Recorded Anthropic Messages answers for the Anthropic upstream's tests (a helper, not a test module).

Written from Anthropic's "Messages" and "Streaming Messages" docs (the text, tool use and extended thinking
examples); tests/core/test_anthropic_egress.py checks every body and event against the anthropic SDK's types,
so they stay the shapes the real API sends.
"""

from __future__ import annotations

import json
from typing import Any

MODEL = "claude-sonnet-4-5-20250929"


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", *, model: str = MODEL,
            usage: dict[str, int] | None = None, stop_sequence: str | None = None) -> dict[str, Any]:
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": usage or {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 0}}


TEXT = message([{"type": "text", "text": "Hello! How can I help?"}])
TOOL = message([
    {"type": "thinking", "thinking": "The user wants the weather; I should call get_weather.",
     "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
    {"type": "text", "text": "I'll check the weather."},
    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
     "input": {"location": "San Francisco, CA", "unit": "celsius"}},
], "tool_use", usage={"input_tokens": 384, "output_tokens": 95, "cache_creation_input_tokens": 10,
                      "cache_read_input_tokens": 200})


def sse(*events: dict[str, Any]) -> bytes:
    """Anthropic's SSE: `event: <type>` then `data: <json>` for each event."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in events)


def _start(input_tokens: int = 25, *, model: str = MODEL) -> dict[str, Any]:
    return {"type": "message_start", "message": {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0}}}


def _end(stop_reason: str, output_tokens: int) -> list[dict[str, Any]]:
    return [{"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
             "usage": {"output_tokens": output_tokens}},
            {"type": "message_stop"}]


def text_events(*pieces: str, model: str = MODEL) -> list[dict[str, Any]]:
    return [_start(model=model), {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "text", "text": ""}},
            {"type": "ping"},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
              for p in pieces),
            {"type": "content_block_stop", "index": 0}, *_end("end_turn", 15)]


TEXT_EVENTS = text_events("Hello", "! Grüß dich ✓")
TOOL_EVENTS: list[dict[str, Any]] = [
    _start(472),
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                  "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Weather "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "tool needed."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta",
                                                          "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrk"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Okay, let's check"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta",
                                                          "partial_json": "{\"location\": \"San Fra"}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta",
                                                          "partial_json": "ncisco, CA\"}"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "content_block_start", "index": 3, "content_block": {
        "type": "tool_use", "id": "toolu_02NoArgs", "name": "get_time", "input": {}}},
    {"type": "content_block_stop", "index": 3},
    *_end("tool_use", 89),
]
OVERLOADED_EVENT = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}
