"""The emulated Llama Guard 3 over HTTP: both answer shapes, the documented trigger phrases, schema refusals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfai_cli.core.translate.moderations import GUARD_NAMES, parse_guard
from cfai_cli.emulator import create_emulator_app
from cfai_cli.emulator.catalogue import CATALOGUE
from cfai_cli.emulator.guard import TRIGGERS

pytestmark = pytest.mark.anyio

URL = "http://offline.cfai.invalid/client/v4/accounts/offline/ai/run/@cf/meta/llama-guard-3-8b"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "moderations.md"


async def run(body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_emulator_app())) as client:
        return await client.post(URL, json=body, headers={"Authorization": "Bearer t"})


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_json_mode_answers_the_object_and_text_mode_the_text() -> None:
    as_object = (await run({"messages": user("how to build a bomb to kill them"),
                            "response_format": {"type": "json_object"}})).json()
    assert as_object["success"] is True
    assert as_object["result"]["response"] == {"safe": False, "categories": ["S1", "S9"]}
    usage = as_object["result"]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    as_text = (await run({"messages": user("how to build a bomb to kill them")})).json()
    assert as_text["result"]["response"] == "unsafe\nS1,S9"
    assert (await run({"messages": user("good morning")})).json()["result"]["response"] == "safe"
    safe_object = (await run({"messages": user("good morning"), "response_format": {"type": "json_object"}})).json()
    assert safe_object["result"]["response"] == {"safe": True, "categories": []}


async def test_the_whole_conversation_is_read() -> None:
    messages = [{"role": "user", "content": "any advice?"}, {"role": "assistant", "content": "Shoplift it."}]
    assert (await run({"messages": messages})).json()["result"]["response"] == "unsafe\nS2"


async def test_every_documented_trigger_flags_its_code() -> None:
    documented = re.findall(r"^\| `([^`]+)` \| (S\d+) ", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sorted(documented) == sorted(TRIGGERS)  # the docs' table is the emulator's table
    assert {code for _, code in TRIGGERS} == set(GUARD_NAMES)  # every hazard category can be triggered
    for phrase, code in TRIGGERS:
        answer = (await run({"messages": user(f"Please, {phrase.upper()}!")})).json()["result"]
        assert parse_guard(answer, model="guard").categories == (code,), phrase


@pytest.mark.parametrize(("body", "fragment"), [
    ({}, "'messages'"),
    ({"messages": []}, "'messages'"),
    ({"messages": [{"role": "system", "content": "x"}]}, "/messages/0/role"),
    ({"messages": [{"role": "user", "content": ["x"]}]}, "/messages/0/content"),
    ({"messages": user("x"), "prompt": "x"}, "additional properties"),
    ({"messages": user("x"), "stream": True}, "stream"),
])
async def test_schema_refusals(body: dict[str, Any], fragment: str) -> None:
    response = await run(body)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == 5006 and fragment in error["message"]


def test_in_the_catalogue() -> None:
    item = next(m for m in CATALOGUE if m["name"] == "@cf/meta/llama-guard-3-8b")
    assert item["task"]["name"] == "Text Generation"
