"""A 404 for an unknown Workers AI model names the catalogue's closest ids, on every path to Workers AI
(added by the service after the provider's `ModelNotFound`, not by the client)."""

from __future__ import annotations

import pytest

from cfai_cli.settings import Settings
from tests.server.conftest import offline

pytestmark = pytest.mark.anyio

CHAT = {"model": "@cf/meta/llama-3.3-70b-instruct", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("path", "body", "meant"), [
    ("/v1/chat/completions", CHAT, "@cf/meta/llama-3.3-70b-instruct-fp8-fast"),
    ("/v1/chat/completions", {**CHAT, "stream": True}, "@cf/meta/llama-3.3-70b-instruct-fp8-fast"),
    ("/v1/embeddings", {"model": "@cf/baai/bge-base-en", "input": "hi"}, "@cf/baai/bge-base-en-v1.5"),
])
async def test_an_unknown_model_gets_did_you_mean(settings: Settings, api_key: str, path: str,
                                                  body: dict[str, object], meant: str) -> None:
    async with offline(settings) as client:
        answer = await client.post(path, json=body, headers={"Authorization": f"Bearer {api_key}"})
        assert answer.status_code == 404, answer.text
        error = answer.json()["error"]
        assert error["param"] == "model"
        assert f"Did you mean {meant}" in error["message"]
        assert error["message"].count("Did you mean") == 1
