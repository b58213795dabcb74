"""Neurons through the proxy: measured where Workers AI reports them (header or usage.neurons), estimated from
published prices elsewhere; on the answer's headers (a stream's trailing SSE comment) and in the usage log."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.core.catalog import PUBLISHED_PRICES
from cfai_cli.core.cost import Units, estimate_neurons
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.usage import UsageLog, summarise
from tests.fake_workers import envelope, sse

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"  # priced in the published table: $0.29 / $2.25 per M
PROMPT, COMPLETION = 11, 3


def estimate(prompt: int = PROMPT, completion: int = COMPLETION) -> float:
    return estimate_neurons(PUBLISHED_PRICES[MODEL], Units(input_tokens=prompt, output_tokens=completion))


class Reporting:
    """A Workers AI that reports neurons by what the prompt asks for: 'header' (cf-ai-neurons), 'usage'
    (usage.neurons in the result, or the stream's last event), anything else nothing."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body: dict[str, Any] = json.loads(request.content)
        how = body["messages"][-1]["content"]
        usage: dict[str, Any] = {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION,
                                 "total_tokens": PROMPT + COMPLETION}
        if how == "usage":
            usage["neurons"] = 4.75
        headers = {"cf-ai-neurons": "12.5"} if how == "header" else {}
        if body.get("stream"):
            events = sse({"response": "one"}, {"response": " two three"}, {"response": "", "usage": usage})
            return httpx.Response(200, content=events, headers={"content-type": "text/event-stream", **headers})
        return httpx.Response(200, json=envelope({"response": "one two three", "usage": usage}), headers=headers)


async def _calls(settings: Settings, api_key: str, *, trailer: bool = True) -> dict[tuple[str, bool], httpx.Response]:
    app = create_app(settings, transport=httpx.MockTransport(Reporting()))
    answers = {}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        for how in ("header", "usage", "none"):
            for stream in (False, True):
                answer = await client.post("/v1/chat/completions", json={
                    "model": MODEL, "messages": [{"role": "user", "content": how}], "stream": stream},
                    headers={"x-cfai-neurons": "trailer"} if trailer else {})
                assert answer.status_code == 200, answer.text
                answers[how, stream] = answer
    return answers


async def test_headers_say_measured_where_reported_and_estimated_elsewhere(settings: Settings, api_key: str) -> None:
    answers = await _calls(settings, api_key)
    plain = {how: answers[how, False].headers for how in ("header", "usage", "none")}
    assert (plain["header"]["x-cfai-neurons"], plain["header"]["x-cfai-neurons-source"]) == ("12.5", "measured")
    assert (plain["usage"]["x-cfai-neurons"], plain["usage"]["x-cfai-neurons-source"]) == ("4.75", "measured")
    assert plain["none"]["x-cfai-neurons-source"] == "estimated"
    assert float(plain["none"]["x-cfai-neurons"]) == pytest.approx(estimate(), abs=1e-6)
    assert estimate() > 0
    # A stream's headers go before its count: asked, it ends with an SSE comment instead, which clients skip.
    for how, expected in (("header", b": x-cfai-neurons=12.5 measured\n\n"),
                          ("usage", b": x-cfai-neurons=4.75 measured\n\n")):
        streamed = answers[how, True]
        assert "x-cfai-neurons" not in streamed.headers
        assert streamed.content.endswith(b"data: [DONE]\n\n" + expected)
    tail = answers["none", True].content.rsplit(b"\n\n", 2)[-2]
    assert tail.startswith(b": x-cfai-neurons=") and tail.endswith(b" estimated")
    assert float(tail.split(b"=")[1].split()[0]) == pytest.approx(estimate(), abs=1e-6)


async def test_usage_log_rows_and_summaries(settings: Settings, api_key: str) -> None:
    await _calls(settings, api_key)  # the recorder flushes when the app stops
    rows = UsageLog(settings.database).rows(since=0)
    assert len(rows) == 6
    assert {(r.neurons, r.neurons_estimated) for r in rows if not r.neurons_estimated} == {(12.5, False), (4.75, False)}
    assert sorted(r.neurons for r in rows if not r.neurons_estimated) == [4.75, 4.75, 12.5, 12.5]
    estimated = [r for r in rows if r.neurons_estimated]
    assert len(estimated) == 2 and all(r.neurons == pytest.approx(estimate()) for r in estimated)
    assert all(r.account == "cloudflare" for r in rows)
    assert all(r.cost_usd == pytest.approx(r.neurons * 0.011 / 1000) for r in rows if r.neurons is not None)
    (total,) = summarise(rows, by="upstream")
    assert total.neurons == pytest.approx(2 * (12.5 + 4.75) + 2 * estimate())
    assert total.estimated_neurons == pytest.approx(2 * estimate())
    assert total.cost_usd == pytest.approx(total.neurons * 0.011 / 1000)


async def test_the_sdk_reads_a_stream_ending_in_the_neurons_comment(settings: Settings) -> None:
    app = create_app(settings, no_auth=True, transport=httpx.MockTransport(Reporting()))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        sdk = openai.AsyncOpenAI(api_key="unused", base_url="http://127.0.0.1/v1", http_client=http)
        stream = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "header"}],
                                                   stream=True, extra_headers={"x-cfai-neurons": "trailer"})
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        assert text == "one two three"
        raw = await sdk.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "header"}])
        assert raw.headers["x-cfai-neurons"] == "12.5" and raw.parse().choices[0].message.content == "one two three"


async def test_no_workers_ai_call_no_neurons(settings: Settings, api_key: str) -> None:
    app = create_app(settings, transport=httpx.MockTransport(Reporting()))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}"}) as client:
        refused = await client.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
        assert refused.status_code == 400 and "x-cfai-neurons" not in refused.headers
    assert [r.neurons for r in UsageLog(settings.database).rows(since=0)] == [None]


async def test_a_stream_ends_with_done_unless_the_comment_is_asked_for(settings: Settings, api_key: str) -> None:
    answers = await _calls(settings, api_key, trailer=False)
    for how in ("header", "usage", "none"):
        assert answers[how, True].content.endswith(b"data: [DONE]\n\n")
    rows = UsageLog(settings.database).rows(since=0)
    assert sorted(r.neurons for r in rows if not r.neurons_estimated) == [4.75, 4.75, 12.5, 12.5]


async def test_offline_figures_are_measured_for_some_calls_and_estimated_for_others(settings: Settings,
                                                                                    api_key: str) -> None:
    from tests.server.conftest import offline

    async with offline(settings) as http:
        sdk = openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http)
        chat = await sdk.chat.completions.with_raw_response.create(model=MODEL, messages=[
            {"role": "user", "content": "hello"}])
        embedded = await sdk.embeddings.with_raw_response.create(model="@cf/baai/bge-m3", input=["a", "b"])
    assert chat.headers["x-cfai-neurons-source"] == "measured" and float(chat.headers["x-cfai-neurons"]) > 0
    usage = chat.parse().usage
    assert usage is not None
    assert float(chat.headers["x-cfai-neurons"]) == pytest.approx(
        estimate(usage.prompt_tokens, usage.completion_tokens), abs=1e-5)  # the emulator bills list price
    assert embedded.headers["x-cfai-neurons-source"] == "estimated" and float(embedded.headers["x-cfai-neurons"]) > 0
