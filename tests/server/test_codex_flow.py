"""Codex CLI tool loops on /v1/responses, replayed from real Codex 0.171.0 request bodies (tests/fixtures/codex).

`default`: Codex's default model (gpt-6.2-sol, "responses lite"): no top-level `tools`, every tool arrives in an
`additional_tools` input item (namespaces `functions`, `clock`, `collaboration`; the custom JavaScript `exec`
tool). `gpt-5.5`: top-level tools, the custom apply_patch tool, and the hosted `tool_search` and `web_search`,
which are dropped and said so in `x-cfai-dropped-tools`. Each prompt carries the emulator's call/args
triggers, so turn one makes the call Codex ran; turn two is the body Codex really sent next (turn one plus the
reasoning, the call and its output) and gets the final answer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfai_cli.emulator.content import PARALLEL
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from tests.openai_schema import validate, validate_sse_responses_stream

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "codex"
LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"  # a native model: tools in the strict native schema


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# (fixture, header x-cfai-dropped-tools, the call turn one makes, what the final answer quotes from its output)
CASES = [
    ("default", None, ("custom_tool_call", "functions", "exec"), "Script completed"),
    ("gpt-5.5", "tool_search,web_search", ("custom_tool_call", None, "apply_patch"), "Updated the following files"),
]


def client_for(settings: Settings, api_key: str) -> tuple[Any, httpx.AsyncClient]:
    app = create_app(settings.as_offline())
    return app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test/v1",
                                  headers={"Authorization": f"Bearer {api_key}"})


def key(item: dict[str, Any]) -> tuple[str, str | None, str]:
    return item["type"], item.get("namespace"), item["name"]


@pytest.mark.parametrize("model", [None, LLAMA])
@pytest.mark.parametrize(("name", "dropped", "call", "quoted"), CASES)
async def test_codex_tool_loop_as_recorded(settings: Settings, api_key: str, model: str | None, name: str,
                                           dropped: str | None, call: tuple[str, str | None, str],
                                           quoted: str) -> None:
    first = fixture(f"{name}_request.json")
    if model is not None:
        first["model"] = model
    recorded = fixture(f"{name}_followup_items.json")
    app, client = client_for(settings, api_key)
    async with app.router.lifespan_context(app), client:
        reply = await client.post("/responses", json=first)
        assert reply.status_code == 200, reply.text
        assert reply.headers.get("x-cfai-dropped-tools") == dropped
        events = validate_sse_responses_stream(reply.text)
        output = events[-1]["response"]["output"]
        calls = [o for o in output if o["type"] in ("function_call", "custom_tool_call")]
        assert [key(o) for o in calls] == [call]
        # What Codex read from cfai's answer and sent back: the same call, under its own name and namespace.
        sent_back = [o for o in recorded if o["type"] == call[0]]
        assert [key(o) for o in sent_back] == [call] and sent_back[0]["input"] == calls[0]["input"]
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        assert [d["type"] for d in done] == [o["type"] for o in output]  # what Codex reads, item by item

        second = {**first, "input": [*first["input"], *recorded]}
        reply = await client.post("/responses", json=second)
        assert reply.status_code == 200, reply.text
        final = validate_sse_responses_stream(reply.text)[-1]["response"]
    validate(final, "Response")
    assert final["status"] == "completed"
    assert [o["type"] for o in final["output"] if o["type"] != "reasoning"] == ["message"]
    assert quoted in final["output_text"]  # the emulator quotes the last tool result back


@pytest.mark.parametrize("model", [None, LLAMA])
async def test_every_tool_of_codex_default_model_maps_back(settings: Settings, api_key: str,
                                                           model: str | None) -> None:
    """All of Codex's `additional_tools` at once (the emulator's parallel trigger): each call comes back under
    the name and namespace Codex gave it."""
    body = fixture("default_request.json")
    if model is not None:
        body["model"] = model
    body["parallel_tool_calls"] = True
    last = body["input"][-1]["content"][0]
    last["text"] = f"list the files here {PARALLEL}"
    offered = [(t["type"], ns["name"], t["name"]) for item in body["input"] if item["type"] == "additional_tools"
               for ns in item["tools"] for t in ns["tools"]]
    app, client = client_for(settings, api_key)
    async with app.router.lifespan_context(app), client:
        reply = await client.post("/responses", json=body)
    assert reply.status_code == 200, reply.text
    output = validate_sse_responses_stream(reply.text)[-1]["response"]["output"]
    calls = [o for o in output if o["type"] != "reasoning"]
    kinds = {"custom": "custom_tool_call", "function": "function_call"}
    assert [key(o) for o in calls] == [(kinds[kind], space, name) for kind, space, name in offered]
    assert len(offered) == 12


async def test_tools_only_in_additional_tools_are_still_offered(settings: Settings, api_key: str) -> None:
    """Before cfai read `additional_tools`, Codex's default model was offered no tools and answered in text."""
    body = copy.deepcopy(fixture("default_request.json"))
    assert "tools" not in body
    body["input"][-1]["content"][0]["text"] = "list the files here"
    app, client = client_for(settings, api_key)
    async with app.router.lifespan_context(app), client:
        reply = await client.post("/responses", json={**body, "stream": False})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    validate(answer, "Response")
    assert [key(o) for o in answer["output"] if o["type"] != "reasoning"] == [("custom_tool_call", "functions", "exec")]
    assert answer["model"] == "@cf/openai/gpt-oss-120b"  # gpt-6.2-sol belongs to the gpt-6 alias family
