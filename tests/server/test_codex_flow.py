"""A Codex CLI tool loop on /v1/responses, with the request body Codex sends by default (tests/fixtures/codex).

Turn one: the hosted web_search tool is dropped (and said so in `x-cfai-dropped-tools`), the model calls the
function tools, the custom apply_patch tool and the namespaced MCP tool, which come back as `function_call`
(with `namespace`) and `custom_tool_call` items. Turn two replays everything the way Codex does with
`store: false` (reasoning items without ids, calls, then their outputs) and gets the final answer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.upstream.emulator.content import PARALLEL
from tests.openai_schema import validate, validate_sse_responses_stream

pytestmark = pytest.mark.anyio

CODEX = json.loads((Path(__file__).resolve().parent.parent / "fixtures" / "codex" / "responses_request.json")
                   .read_text())


def replayed(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as Codex sends it back: no `id` on calls and reasoning, nothing cfai-specific added."""
    kind = item["type"]
    if kind == "reasoning":
        return {"type": "reasoning", "summary": item["summary"], "encrypted_content": None}
    if kind == "function_call":
        return {k: item[k] for k in ("type", "name", "arguments", "call_id", "namespace") if k in item}
    if kind == "custom_tool_call":
        return {k: item[k] for k in ("type", "status", "call_id", "name", "input")}
    return item


def output_of(item: dict[str, Any]) -> dict[str, Any]:
    if item["type"] == "custom_tool_call":
        return {"type": "custom_tool_call_output", "call_id": item["call_id"],
                "output": "Success. Updated the following files:\nA README.md"}
    return {"type": "function_call_output", "call_id": item["call_id"], "output": f"ran {item['name']}: exit 0"}


@pytest.mark.parametrize("model", ["gpt-5", "@cf/meta/llama-3.3-70b-instruct-fp8-fast"])
async def test_codex_tool_loop(settings: Settings, api_key: str, model: str) -> None:
    first = copy.deepcopy(CODEX)
    first["model"] = model
    first["input"][-1]["content"][0]["text"] += f" {PARALLEL}"  # the emulator calls every tool at once
    first["parallel_tool_calls"] = True
    app = create_app(settings.as_offline())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy.test/v1",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as client:
        reply = await client.post("/responses", json=first)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-cfai-dropped-tools"] == "web_search"
        events = validate_sse_responses_stream(reply.text)
        output = events[-1]["response"]["output"]
        calls = [o for o in output if o["type"] in ("function_call", "custom_tool_call")]
        assert [(o["type"], o.get("namespace"), o["name"]) for o in calls] == [
            ("function_call", None, "shell_command"), ("function_call", None, "update_plan"),
            ("custom_tool_call", None, "apply_patch"), ("function_call", None, "view_image"),
            ("function_call", "mcp__docs", "search")]
        patch = calls[2]
        assert patch["input"] == "example" and "arguments" not in patch
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        assert [d["type"] for d in done] == [o["type"] for o in output]  # what Codex reads, item by item

        second = copy.deepcopy(CODEX)
        second["model"] = model
        second["input"] = [*CODEX["input"], *(replayed(o) for o in output), *(output_of(o) for o in calls)]
        reply = await client.post("/responses", json=second)
        assert reply.status_code == 200, reply.text
        final = validate_sse_responses_stream(reply.text)[-1]["response"]
    validate(final, "Response")
    assert final["status"] == "completed"
    assert [o["type"] for o in final["output"] if o["type"] != "reasoning"] == ["message"]
    assert "exit 0" in final["output_text"]  # the emulator quotes the last tool result back
