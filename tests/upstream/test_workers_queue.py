"""WorkersAIClient.queue / poll_queue: the URL and body of Workers AI's async batch (reference §2.11), the
10 MB limit, answers that are not a queued batch, and the client's usual retries and error mapping."""

from __future__ import annotations

import json

import httpx
import pytest

from cfai_cli.errors import InvalidRequest, RequestTooLarge, UpstreamError
from cfai_cli.upstream.workers import WorkersAIClient
from cfai_cli.upstream.workers_account import MAX_QUEUE_BYTES
from tests.fake_workers import envelope, error_envelope

pytestmark = pytest.mark.anyio
MODEL = "@cf/baai/bge-m3"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(handler, *, retries: int = 3) -> WorkersAIClient:  # type: ignore[no-untyped-def]
    return WorkersAIClient(account_id="acct", api_token="secret-token", api_base="https://cf.test/client/v4",
                           timeout=5, max_retries=retries, transport=httpx.MockTransport(handler))


async def test_queue_and_poll_post_to_the_models_url_with_queue_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if b"requests" in request.content:
            return httpx.Response(200, json=envelope({"status": "queued", "request_id": "r-1", "model": MODEL}))
        return httpx.Response(200, json=envelope({"responses": [], "usage": {}}), headers={"cf-ai-neurons": "2"})

    workers = client(handler)
    queued = await workers.queue(MODEL, [{"text": "a", "external_reference": "0"}])
    assert queued == {"status": "queued", "request_id": "r-1", "model": MODEL}
    assert await workers.poll_queue(MODEL, "r-1") == {"responses": [], "usage": {}}
    for request in seen:
        assert request.method == "POST" and request.url.params["queueRequest"] == "true"
        assert request.url.path == f"/client/v4/accounts/acct/ai/run/{MODEL}"
        assert request.headers["authorization"] == "Bearer secret-token"
    assert json.loads(seen[0].content) == {"requests": [{"text": "a", "external_reference": "0"}]}
    assert json.loads(seen[1].content) == {"request_id": "r-1"}


async def test_a_payload_of_ten_megabytes_is_refused_before_it_is_sent() -> None:
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(len(request.content))
        return httpx.Response(200, json=envelope({"status": "queued", "request_id": "r"}))

    workers = client(handler)
    filler = "x" * (MAX_QUEUE_BYTES - len('{"requests":[{"text":""}]}'))
    with pytest.raises(RequestTooLarge) as refused:
        await workers.queue(MODEL, [{"text": filler}])
    assert refused.value.status == 413 and sent == []
    await workers.queue(MODEL, [{"text": filler[:-1]}])  # one byte under: sent
    assert sent == [MAX_QUEUE_BYTES - 1]


@pytest.mark.parametrize("result", [{"response": "ran at once"}, {"status": "queued"}, {"request_id": ""}, []])
async def test_an_answer_without_a_request_id_is_no_queued_batch(result: object) -> None:
    workers = client(lambda request: httpx.Response(200, json=envelope(result)))
    with pytest.raises(UpstreamError, match="did not queue the batch"):
        await workers.queue(MODEL, [{"text": "a"}])


async def test_a_poll_is_retried_on_a_transient_failure_and_maps_errors_like_any_call() -> None:
    answers = [httpx.Response(500, json=error_envelope(3000, "AiError: Internal server error")),
               httpx.Response(200, json=envelope({"status": "running", "request_id": "r"}))]
    workers = client(lambda request: answers.pop(0))
    assert await workers.poll_queue(MODEL, "r") == {"status": "running", "request_id": "r"}
    refused = client(lambda request: httpx.Response(400, json=error_envelope(5006, "AiError: Bad input")))
    with pytest.raises(InvalidRequest):
        await refused.poll_queue(MODEL, "r")
    odd = client(lambda request: httpx.Response(200, json=envelope(["not", "an", "object"])))
    with pytest.raises(UpstreamError, match="something other than an object"):
        await odd.poll_queue(MODEL, "r")
