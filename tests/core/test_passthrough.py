"""core.openai.passthrough: the fields an OpenAI-compatible upstream gets are the OpenAI spec's, no others."""

from __future__ import annotations

import json
from typing import Any

from cfai_cli.core.openai.passthrough import CHAT_REQUEST_FIELDS, openai_fields
from tests.openai_schema import SUBSET_PATH


def _properties(schemas: dict[str, Any], name: str) -> set[str]:
    schema = schemas[name]
    found = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        if "$ref" in part:
            found |= _properties(schemas, part["$ref"].rsplit("/", 1)[-1])
        found |= set(part.get("properties", {}))
    return found


def test_the_field_list_is_the_specs_create_chat_completion_request() -> None:
    schemas = json.loads(SUBSET_PATH.read_text(encoding="utf-8"))["components"]["schemas"]
    assert _properties(schemas, "CreateChatCompletionRequest") == CHAT_REQUEST_FIELDS


def test_provider_routing_fields_are_dropped_unless_configured() -> None:
    body = {"model": "m", "messages": [], "temperature": 1, "provider": {"order": ["x"]}, "models": ["a", "b"],
            "route": "fallback", "transforms": ["middle-out"], "usage": {"include": True}}
    assert openai_fields(body) == {"model": "m", "messages": [], "temperature": 1}
    assert openai_fields(body, ["provider", "usage"]) == {"model": "m", "messages": [], "temperature": 1,
                                                          "provider": {"order": ["x"]}, "usage": {"include": True}}
