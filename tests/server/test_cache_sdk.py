"""The response cache through the HTTP surface, with the real openai SDK: tenants, TTL, the header, streams.

Workers AI is a FakeWorkers table, so every upstream call is counted: a hit must make none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.core.cache import CacheConfig
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.cache import CacheStats, CacheStore
from cfai_cli.store.keys import KeyPolicy, KeyStore
from cfai_cli.store.usage import UsageLog
from tests.fake_workers import FakeWorkers, native_text, sse, sse_response
from tests.openai_schema import validate, validate_sse_chat_stream, validate_sse_responses_stream
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio

MODEL = "@cf/meta/llama-3.1-8b-instruct-fast"  # what gpt-4o-mini stands for
EMBED = "@cf/baai/bge-base-en-v1.5"
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Proxy:
    app: Any
    fake: FakeWorkers
    now: list[float]

    def sdk(self, key: str) -> openai.AsyncOpenAI:
        http = sdk_httpx.AsyncClient(transport=sdk_httpx.ASGITransport(app=self.app), base_url="http://proxy.test/v1")
        return openai.AsyncOpenAI(api_key=key, base_url="http://proxy.test/v1", http_client=http, max_retries=0,
                                  _strict_response_validation=True)

    def raw(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://proxy.test/v1",
                                 headers={"Authorization": f"Bearer {key}"})

    def upstream_calls(self, model: str = MODEL) -> int:
        return sum(1 for called, _ in self.fake.calls if called == model)


def keys(settings: Settings, *names: str, **policy: Any) -> list[str]:
    store = KeyStore(settings.database)
    return [store.create(name, KeyPolicy(cache=True, **policy))[0] for name in names]


@pytest.fixture
def cached(settings: Settings, fake: FakeWorkers) -> Callable[..., Any]:
    fake.models[MODEL] = native_text("Paris is the capital of France")

    @asynccontextmanager
    async def open_proxy(**config: Any) -> AsyncIterator[Proxy]:
        changed = replace(settings, cache=CacheConfig(enabled=True, **config))
        app = create_app(changed, transport=fake.transport())
        now = [1_900_000_000.0]
        async with app.router.lifespan_context(app):
            app.state.ctx.clock = lambda: now[0]  # the cache's time (and the answers'): moved by the tests
            app.state.housekeeping.clock = app.state.ctx.clock
            yield Proxy(app, fake, now)

    return open_proxy


async def ask(client: openai.AsyncOpenAI, *, header: str | None = None, **extra: Any) -> tuple[str | None, Any]:
    options: dict[str, Any] = {"model": "gpt-4o-mini", "messages": HI, "temperature": 0, **extra}
    raw = await client.chat.completions.with_raw_response.create(
        **options, extra_headers={"x-cfai-cache": header} if header else None)
    return raw.headers.get("x-cfai-cache"), raw.parse()


async def test_a_hit_makes_no_upstream_call_and_one_key_never_sees_anothers(cached, settings: Settings) -> None:
    key_a, key_b = keys(settings, "a", "b")
    async with cached() as proxy:
        status, first = await ask(proxy.sdk(key_a))
        assert status == "miss" and proxy.upstream_calls() == 1
        status, again = await ask(proxy.sdk(key_a))
        assert status == "hit" and proxy.upstream_calls() == 1  # served without Workers AI
        assert again.choices[0].message.content == first.choices[0].message.content == "Paris is the capital of France"
        assert again.id != first.id and again.usage == first.usage  # a new answer object, the same answer
        validate(again.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionResponse")
        status, _ = await ask(proxy.sdk(key_b))  # the same request, another tenant
        assert status == "miss" and proxy.upstream_calls() == 2
        status, _ = await ask(proxy.sdk(key_b))
        assert status == "hit" and proxy.upstream_calls() == 2
        raw = await proxy.raw(key_a).post("/chat/completions", json={"model": "gpt-4o-mini", "messages": HI,
                                                                      "temperature": 0})
        assert raw.headers["x-cfai-upstream"] == "cache" and raw.headers["x-cfai-model"] == MODEL


async def test_what_changes_the_answer_changes_the_key(cached, settings: Settings) -> None:
    (key,) = keys(settings, "a")
    async with cached() as proxy:
        client = proxy.sdk(key)
        assert (await ask(client))[0] == "miss"
        assert (await ask(client, max_tokens=7))[0] == "miss"
        assert (await ask(client, user="someone"))[0] == "miss"  # end users are kept apart
        assert (await ask(client, messages=[{"role": "user", "content": "hi!"}]))[0] == "miss"
        assert (await ask(client, stream_options=None, metadata={"a": "b"}))[0] == "hit"  # delivery only
        assert proxy.upstream_calls() == 4


async def test_entries_expire_after_their_ttl(cached, settings: Settings) -> None:
    (key,) = keys(settings, "a")
    async with cached(ttl=60) as proxy:
        client = proxy.sdk(key)
        assert (await ask(client))[0] == "miss"
        proxy.now[0] += 59
        assert (await ask(client))[0] == "hit"
        proxy.now[0] += 2  # 61 s after it was stored
        assert (await ask(client))[0] == "miss"
        assert proxy.upstream_calls() == 2
        assert (await ask(client))[0] == "hit"  # stored again by the miss
        store = CacheStore(settings.database)
        assert store.stats(now=proxy.now[0]).entries == 1  # the answer the miss stored
        proxy.now[0] += 120
        # The hourly pass deletes what expired (its first run, at start-up, may come this late on a slow machine).
        await proxy.app.state.housekeeping.prune_cache()
        assert store.stats(now=proxy.now[0]) == CacheStats(0, 0, 0)


async def test_skip_and_refresh(cached, settings: Settings, fake: FakeWorkers) -> None:
    (key,) = keys(settings, "a")
    async with cached() as proxy:
        client = proxy.sdk(key)
        await ask(client)
        status, _ = await ask(client, header="skip")
        assert status == "bypass" and proxy.upstream_calls() == 2  # neither read nor written
        fake.models[MODEL] = native_text("Lyon")
        status, refreshed = await ask(client, header="refresh")
        assert status == "refresh" and refreshed.choices[0].message.content == "Lyon" and proxy.upstream_calls() == 3
        status, after = await ask(client, header="use")
        assert status == "hit" and after.choices[0].message.content == "Lyon"  # the refreshed answer replaced it
        bad = await proxy.raw(key).post("/chat/completions", headers={"x-cfai-cache": "always"},
                                        json={"model": "gpt-4o-mini", "messages": HI})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-cfai-cache"


async def test_temperature_above_zero_is_cached_only_when_asked(cached, settings: Settings) -> None:
    (key,) = keys(settings, "a")
    async with cached() as proxy:
        client = proxy.sdk(key)
        for options in ({"temperature": 0.7}, {"temperature": None}):  # unset: OpenAI's default, 1
            assert (await ask(client, **options))[0] == "bypass"
            assert (await ask(client, **options))[0] == "bypass"
        assert proxy.upstream_calls() == 4
        assert (await ask(client, header="use", temperature=0.7))[0] == "miss"
        assert (await ask(client, header="use", temperature=0.7))[0] == "hit"
    async with cached(temperature_zero_only=False) as proxy:
        client = proxy.sdk(key)
        assert (await ask(client, temperature=0.9))[0] == "miss"
        assert (await ask(client, temperature=0.9))[0] == "hit"


async def test_keys_without_the_flag_use_it_only_when_asked(cached, settings: Settings) -> None:
    plain, _ = KeyStore(settings.database).create("plain")
    async with cached() as proxy:
        client = proxy.sdk(plain)
        assert (await ask(client))[0] == "bypass"
        assert (await ask(client, header="use"))[0] == "miss"
        assert (await ask(client, header="use"))[0] == "hit"
    async with cached(by_default=True) as proxy:
        assert (await ask(proxy.sdk(plain)))[0] == "hit"  # every key, when the config says so
    async with cached(routes=["embeddings"]) as proxy:
        assert (await ask(proxy.sdk(plain), header="use"))[0] is None  # a route the cache does not serve


async def test_a_streamed_miss_is_stored_and_replayed_as_a_proper_stream(cached, settings: Settings) -> None:
    (key,) = keys(settings, "a")
    body = {"model": "gpt-4o-mini", "messages": HI, "temperature": 0, "stream": True}
    async with cached() as proxy:
        raw = proxy.raw(key)
        first = await raw.post("/chat/completions", json=body)
        assert first.headers["x-cfai-cache"] == "miss"
        live = validate_sse_chat_stream(first.content)
        assert all("usage" not in chunk or chunk["usage"] is None for chunk in live)  # not asked for, not shown
        second = await raw.post("/chat/completions", json={**body, "stream_options": {"include_usage": True}})
        assert second.headers["x-cfai-cache"] == "hit" and proxy.upstream_calls() == 1
        replayed = validate_sse_chat_stream(second.content)
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in replayed if c["choices"])
        assert text == "".join(c["choices"][0]["delta"].get("content", "") for c in live if c["choices"])
        assert replayed[-1]["choices"] == [] and replayed[-1]["usage"]["completion_tokens"] == 6
        assert replayed[-2]["choices"][0]["finish_reason"] == "stop"
        status, whole = await ask(proxy.sdk(key))  # the same request, not streamed: the stored stream answers it
        assert status == "hit" and whole.choices[0].message.content == "Paris is the capital of France"
        stream = await proxy.sdk(key).chat.completions.create(model="gpt-4o-mini", messages=HI, temperature=0,
                                                              stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == text
        assert proxy.upstream_calls() == 1


async def test_a_failed_stream_is_never_stored(cached, settings: Settings, fake: FakeWorkers) -> None:
    (key,) = keys(settings, "a")
    broken = sse({"response": "Par"}, {"response": "is"}, done=False) + b"data: {\"errors\": [{\"code\": 3040, " \
        b"\"message\": \"Capacity temporarily exceeded\"}]}\n\n"
    fake.models[MODEL] = lambda request, body: sse_response(broken)
    body = {"model": "gpt-4o-mini", "messages": HI, "temperature": 0, "stream": True}
    async with cached() as proxy:
        raw = proxy.raw(key)
        for _ in range(2):
            answer = await raw.post("/chat/completions", json=body)
            assert answer.headers["x-cfai-cache"] == "miss" and b"[DONE]" not in answer.content
        assert proxy.upstream_calls() == 2


async def test_policy_and_rate_limits_still_apply_to_hits(cached, settings: Settings) -> None:
    (key,) = keys(settings, "a", rpm=3)
    async with cached() as proxy:
        client = proxy.sdk(key)
        assert (await ask(client))[0] == "miss"
        assert (await ask(client))[0] == "hit"
        with sqlite3.connect(settings.database) as conn:  # the operator narrows the key's models
            conn.execute("UPDATE api_keys SET models = '@cf/qwen/*'")
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await ask(client)
        assert refused.value.body["code"] == "model_not_allowed"  # type: ignore[index]
        with sqlite3.connect(settings.database) as conn:
            conn.execute("UPDATE api_keys SET models = NULL")
        with pytest.raises(openai.RateLimitError):  # the fourth request of the minute, cached or not
            await ask(client)
        assert proxy.upstream_calls() == 1


async def test_embeddings_are_cached(cached, settings: Settings, fake: FakeWorkers) -> None:
    def vectors(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        texts = body["text"]
        return httpx.Response(200, json={"result": {"shape": [len(texts), 3], "data": [[0.1, 0.2, 0.3]] * len(texts)},
                                         "success": True, "errors": [], "messages": []})

    fake.models[EMBED] = vectors
    (key,) = keys(settings, "a")
    async with cached() as proxy:
        client = proxy.sdk(key)
        statuses = []
        for _ in range(2):
            raw = await client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"],
                                                                 encoding_format="float")
            statuses.append(raw.headers.get("x-cfai-cache"))
            assert len(raw.parse().data) == 2
        assert statuses == ["miss", "hit"] and proxy.upstream_calls(EMBED) == 1
        other = await client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a"],
                                                             encoding_format="float")
        assert other.headers.get("x-cfai-cache") == "miss" and proxy.upstream_calls(EMBED) == 2


async def test_responses_messages_and_completions_go_through_the_chat_cache(cached, settings: Settings) -> None:
    (key,) = keys(settings, "a")
    async with cached() as proxy:
        client, raw = proxy.sdk(key), proxy.raw(key)
        for expected in ("miss", "hit"):
            made = await client.responses.with_raw_response.create(model="gpt-4o-mini", input="hi", temperature=0)
            assert made.headers.get("x-cfai-cache") == expected and made.parse().output_text
        events = await raw.post("/responses", json={"model": "gpt-4o-mini", "input": "hi", "temperature": 0,
                                                    "stream": True})
        assert events.headers["x-cfai-cache"] == "hit"
        parsed = validate_sse_responses_stream(events.content)
        assert parsed[-1]["type"] == "response.completed"
        assert proxy.upstream_calls() == 1
        for expected in ("miss", "hit"):
            message = await raw.post("/messages", json={"model": "gpt-4o-mini", "max_tokens": 64, "temperature": 0,
                                                        "messages": HI})
            assert message.status_code == 200 and message.headers["x-cfai-cache"] == expected
        streamed = await raw.post("/messages", json={"model": "gpt-4o-mini", "max_tokens": 64, "temperature": 0,
                                                     "messages": HI, "stream": True})
        assert streamed.headers["x-cfai-cache"] == "hit"  # Anthropic's events, replayed from the stored answer
        assert b"event: message_stop" in streamed.content and b"Paris is the capital" in streamed.content
        for expected in ("miss", "hit"):
            completion = await client.completions.with_raw_response.create(model="gpt-4o-mini", prompt="hello",
                                                                           temperature=0)
            assert completion.headers.get("x-cfai-cache") == expected
        assert proxy.upstream_calls() == 3
        # The chat request a legacy prompt "hi" makes is the one the Responses input "hi" made: the same entry.
        again = await client.completions.with_raw_response.create(model="gpt-4o-mini", prompt="hi", temperature=0)
        assert again.headers.get("x-cfai-cache") == "hit" and proxy.upstream_calls() == 3


async def test_hits_are_in_the_usage_log_and_the_metrics(cached, settings: Settings) -> None:
    (key,) = keys(settings, "a", scopes=frozenset({"chat", "admin"}))
    async with cached() as proxy:
        client = proxy.sdk(key)
        await ask(client)
        await ask(client)
        await ask(client, header="skip")
        metrics = (await proxy.raw(key).get("/metrics")).text
    rows = [r for r in UsageLog(settings.database).rows(since=0) if r.route == "chat/completions"]
    assert [r.cache for r in rows] == ["miss", "hit", "bypass"]
    miss, hit, _ = rows
    assert miss.prompt_tokens > 0 and hit.prompt_tokens == hit.completion_tokens == 0  # no tokens spent
    assert hit.upstream == "cache" and hit.upstream_model == MODEL
    assert 'cfai_cache_requests_total{result="hit",route="/v1/chat/completions"} 1.0' in metrics
    assert 'cfai_cache_requests_total{result="miss",route="/v1/chat/completions"} 1.0' in metrics


async def test_without_auth_everyone_shares_one_tenant(cached, settings: Settings, fake: FakeWorkers) -> None:
    changed = replace(settings, cache=CacheConfig(enabled=True, by_default=True))
    app = create_app(changed, transport=fake.transport(), no_auth=True)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        statuses = [(await client.post("/v1/chat/completions", json={
            "model": "gpt-4o-mini", "messages": HI, "temperature": 0})).headers["x-cfai-cache"] for _ in range(2)]
    assert statuses == ["miss", "hit"]


async def test_off_by_default(settings: Settings, api_key: str, fake: FakeWorkers) -> None:
    fake.models[MODEL] = native_text("Paris")
    app = create_app(settings, transport=fake.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {api_key}", "x-cfai-cache": "use"}) as client:
        for _ in range(2):
            answer = await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI,
                                                                     "temperature": 0})
            assert "x-cfai-cache" not in answer.headers
    assert len(fake.calls) == 2


async def test_an_answer_past_the_entry_bound_is_served_but_not_stored(cached, settings: Settings) -> None:
    (key,) = keys(settings, "a")
    async with cached(max_entry_bytes=64) as proxy:
        client, raw = proxy.sdk(key), proxy.raw(key)
        assert [(await ask(client))[0] for _ in range(2)] == ["miss", "miss"]
        for _ in range(2):
            streamed = await raw.post("/chat/completions", json={"model": "gpt-4o-mini", "messages": HI,
                                                                 "temperature": 0, "stream": True})
            assert streamed.headers["x-cfai-cache"] == "miss" and b"[DONE]" in streamed.content
        assert proxy.upstream_calls() == 4


async def test_a_broken_store_costs_the_cache_not_the_answer(cached, settings: Settings,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    (key,) = keys(settings, "a")
    async with cached() as proxy:
        client = proxy.sdk(key)
        await ask(client)  # the table exists now
        with sqlite3.connect(settings.database) as conn:  # every write to it fails from here on
            conn.execute("CREATE TRIGGER full BEFORE INSERT ON response_cache BEGIN SELECT RAISE(ABORT, 'disk full'); "
                         "END")
        status, answer = await ask(client, max_tokens=9)
        assert status == "miss" and answer.choices[0].message.content == "Paris is the capital of France"
        assert "could not store an answer" in caplog.text
        with sqlite3.connect(settings.database) as conn:  # and now every read
            conn.execute("ALTER TABLE response_cache RENAME TO gone")
        status, answer = await ask(client)
        assert status == "miss" and answer.choices[0].message.content and "could not read" in caplog.text
        assert proxy.upstream_calls() == 3
