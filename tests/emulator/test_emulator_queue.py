"""The emulator's async batch (`?queueRequest=true`, reference §2.11), over HTTP as cfai's client drives it:
queued, then running, then the responses; per-request failures; models without the queue; the 10 MB limit."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cfai_cli.emulator import create_emulator_app, queue
from cfai_cli.emulator.catalogue import CATALOGUE

pytestmark = pytest.mark.anyio

BASE = "http://offline.cfai.invalid/client/v4/accounts/offline/ai/run/"
LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
QWEN3 = "@cf/qwen/qwen3-30b-a3b-fp8"  # not in the docs' list: flagged async_queue "true" in the catalogue
SMALL = "@cf/meta/llama-3.1-8b-instruct-fast"  # no queue
BGE = "@cf/baai/bge-small-en-v1.5"
AUTH = {"Authorization": "Bearer t"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_emulator_app()), headers=AUTH)


async def post(http: httpx.AsyncClient, model: str, body: Any, *, queued: bool = True) -> httpx.Response:
    return await http.post(BASE + model + ("?queueRequest=true" if queued else ""), json=body)


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_a_batch_is_queued_then_running_then_answered_request_by_request() -> None:
    async with client() as http:
        sent = await post(http, LLAMA, {"requests": [{**user("one"), "external_reference": "a"},
                                                     {**user("two"), "temperature": 7, "external_reference": "b"},
                                                     {**user("three"), "external_reference": "c"}]})
        assert sent.status_code == 200 and sent.json()["success"] is True
        queued = sent.json()["result"]
        assert queued["status"] == "queued" and queued["model"] == LLAMA
        request_id = queued["request_id"]
        states = []
        for _ in range(2):
            polled = await post(http, LLAMA, {"request_id": request_id})
            states.append(polled.json()["result"]["status"])
        assert states == ["queued", "running"]
        done = await post(http, LLAMA, {"request_id": request_id})
        again = await post(http, LLAMA, {"request_id": request_id}, queued=False)  # the docs poll both ways
    result = done.json()["result"]
    assert again.json()["result"] == result  # answered for every later poll
    first, bad, third = result["responses"]
    assert (first["id"], first["success"], first["external_reference"]) == (0, True, "a")
    assert "You said: one" in first["result"]["response"]
    assert bad == {"id": 1, "external_reference": "b", "success": False, "result": None,
                   "errors": [{"code": 5006, "message": "AiError: Bad input: Error: must be <= 5 at '/temperature'"}]}
    assert third["success"] is True and third["external_reference"] == "c"
    prompts = first["result"]["usage"]["prompt_tokens"] + third["result"]["usage"]["prompt_tokens"]
    assert result["usage"]["prompt_tokens"] == prompts
    assert float(done.headers["cf-ai-neurons"]) > 0  # a text batch bills as its requests would


async def test_embeddings_queue_and_fail_alone_when_a_text_is_too_long() -> None:
    async with client() as http:
        sent = await post(http, BGE, {"requests": [{"text": ["a b", "c"]}, {"text": "word " * 600}, {"text": []}]})
        request_id = sent.json()["result"]["request_id"]
        for _ in range(3):
            done = await post(http, BGE, {"request_id": request_id})
    ok, long, empty = done.json()["result"]["responses"]
    assert ok["success"] and ok["result"]["shape"] == [2, 384] and ok["external_reference"] is None
    assert long["errors"][0]["code"] == 3030 and not long["success"]
    assert empty["errors"][0]["code"] == 5006
    assert "cf-ai-neurons" not in done.headers  # embeddings report none, live or queued


async def test_a_model_flagged_in_the_catalogue_queues_and_one_without_the_queue_is_refused() -> None:
    async with client() as http:
        flagged = await post(http, QWEN3, {"requests": [user("hi")]})
        refused = await post(http, SMALL, {"requests": [user("hi")]})
        unknown = await post(http, "@cf/nobody/nothing", {"requests": [user("hi")]})
    assert flagged.status_code == 200 and flagged.json()["result"]["status"] == "queued"
    assert refused.status_code == 400 and refused.json()["success"] is False
    assert refused.json()["errors"][0]["code"] == 5006
    assert "does not take queued requests" in refused.json()["errors"][0]["message"]
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["code"] == 5007


def test_which_models_queue() -> None:
    flagged = {item["name"] for item in CATALOGUE
               if any(p["property_id"] == "async_queue" and p["value"] == "true" for p in item["properties"])}
    assert flagged | queue.DOCUMENTED == queue.QUEUE_MODELS
    assert QWEN3 in queue.QUEUE_MODELS and SMALL not in queue.QUEUE_MODELS
    item = {"name": "x", "properties": [{"property_id": "async_queue", "value": True}]}
    assert queue._flagged(item) and not queue._flagged({"properties": [{"property_id": "async_queue",
                                                                        "value": "false"}]})


@pytest.mark.parametrize("body", [{"requests": []}, {"requests": "no"}, {"requests": [1, 2]}, {"text": "x"}])
async def test_a_batch_that_is_not_a_list_of_requests_is_bad_input(body: dict[str, Any]) -> None:
    async with client() as http:
        answer = await post(http, BGE, body)
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == 5006


async def test_an_unknown_request_id_is_bad_input() -> None:
    async with client() as http:
        sent = await post(http, BGE, {"requests": [{"text": "x"}]})
        other_model = await post(http, LLAMA, {"request_id": sent.json()["result"]["request_id"]})
        unknown = await post(http, BGE, {"request_id": "00000000-0000-4000-8000-000000000000"})
    for answer in (other_model, unknown):
        assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == 5006
        assert "no queued request" in answer.json()["errors"][0]["message"]


def batch_of_size(size: int) -> bytes:
    """A queued embeddings batch of exactly `size` bytes: ten requests whose bulk is their external_reference
    (kept out of what the model runs), so the limit is tested at its edge without embedding 10,000 texts."""
    def body(last: int) -> bytes:
        requests = [{"text": "x", "external_reference": "r" * (size // 10)} for _ in range(9)]
        return json.dumps({"requests": [*requests, {"text": "x", "external_reference": "r" * last}]}).encode()

    raw = body(size - len(body(0)))
    assert len(raw) == size
    return raw


async def test_a_payload_of_ten_megabytes_is_too_large() -> None:
    async with client() as http:
        answer = await http.post(BASE + BGE + "?queueRequest=true", content=batch_of_size(queue.MAX_BYTES))
        under = await http.post(BASE + BGE + "?queueRequest=true", content=batch_of_size(queue.MAX_BYTES - 1))
    assert answer.status_code == 413 and answer.json()["errors"][0]["code"] == 3006
    assert under.status_code == 200 and under.json()["result"]["status"] == "queued"


async def test_batches_outlive_the_emulator_app_that_queued_them() -> None:
    async with client() as http:
        request_id = (await post(http, BGE, {"requests": [{"text": "x"}]})).json()["result"]["request_id"]
    async with client() as fresh:  # a restarted cfai builds a new emulator app: Workers AI kept the batch
        polled = await post(fresh, BGE, {"request_id": request_id})
    assert polled.json()["result"]["status"] == "queued"
