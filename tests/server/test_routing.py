"""Routing through the proxy: failover along chains, cooldowns, key rotation, pass-through providers,
mid-stream failures, and the headers, usage rows, /health and /v1/route-check that say who answered.

Every upstream is faked behind one transport (tests/fake_upstreams.py): two Cloudflare accounts, the
second with two tokens, and an OpenAI-compatible provider at groq.test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.keys import SCOPES, KeyPolicy, KeyStore
from cfai_cli.store.usage import UsageLog
from tests.fake_upstreams import FakeUpstreams, openai_chunks, openai_completion
from tests.fake_workers import error_envelope, fixed, native_text, native_tool_call, sse, sse_response

pytestmark = pytest.mark.anyio

MAIN, BACKUP = "0123abcd", "feed0000"
MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
SMALL = "@cf/meta/llama-3.1-8b-instruct-fast"
SECRETS = ("cf-main-token-value", "backup-token-one", "backup-token-two", "groq-secret-key-123")
CONFIG = f"""
[routing]
cooldown_seconds = 30

[upstreams.backup]
type = "cloudflare"
account_id = "{BACKUP}"
api_token_env = ["BACKUP_TOKEN", "BACKUP_TOKEN_2"]

[upstreams.groq]
type = "openai"
base_url = "https://groq.test/openai/v1"
api_key_env = "GROQ_API_KEY"
extra_fields = ["provider"]

[upstreams.spare]
type = "openai"
base_url = "https://spare.test/v1"
api_key_env = "SPARE_KEY_NOT_SET"

[routes]
fast = ["{SMALL}", "groq:llama-3.1-8b-instant"]
only-groq = ["groq:llama-3.3-70b-versatile"]
strict = ["cloudflare:{MODEL}", "spare:whatever"]
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings_with(home: Path, config: str, environ: dict[str, str], *, max_retries: int) -> Settings:
    """Settings for the proxy fixture: `config` as config.toml in `home`, the main account's credentials."""
    (home / "config.toml").write_text(config)
    return load_settings({"account_id": MAIN, "api_token": "cf-main-token-value", "timeout": 5,
                          "max_retries": max_retries}, environ={"CFAI_HOME": str(home), **environ})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(tmp_path, CONFIG, {"BACKUP_TOKEN": "backup-token-one", "BACKUP_TOKEN_2": "backup-token-two",
                                            "GROQ_API_KEY": "groq-secret-key-123"}, max_retries=2)


@pytest.fixture
def up() -> FakeUpstreams:
    fakes = FakeUpstreams()
    for account in (MAIN, BACKUP):
        fakes.account(account).models[MODEL] = native_text(f"hello from {account}")
        fakes.account(account).models[SMALL] = native_text(f"small from {account}")
    return fakes


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def proxy(settings: Settings, up: FakeUpstreams, clock: Clock) -> Callable[..., Any]:
    key, _ = KeyStore(settings.database).create("tests", KeyPolicy(scopes=frozenset(SCOPES)))  # admin: /health detail

    @asynccontextmanager
    async def open_client(*, auth: bool = True) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings, transport=up.transport())
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
                headers={"Authorization": f"Bearer {key}"} if auth else {}) as client:
            app.state.ctx.router.clock = clock
            client.app = app  # type: ignore[attr-defined]
            yield client

    return open_client


def chat(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def text_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def stream_text(raw: str) -> tuple[str, list[dict[str, Any]]]:
    events = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
    parsed = [json.loads(e) for e in events if e != "[DONE]"]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in parsed if c.get("choices"))
    return text, parsed


# ---- failover on each retryable kind, none on client errors -----------------------------------------

FAILURES = {
    "quota": fixed(429, error_envelope(4006, "you have used up your daily free allocation of 10,000 neurons")),
    "capacity": fixed(429, error_envelope("3040", "Capacity temporarily exceeded, please try again.")),
    "rate_limit": fixed(429, error_envelope(3001, "Too many requests"), headers={"retry-after": "2"}),
    "server": fixed(500, error_envelope(3043, "Internal server error")),
    "html_502": fixed(502, b"<html><body>Bad gateway</body></html>", "text/html"),
    "not_found": fixed(400, error_envelope(5007, "No such model")),
    "forbidden": fixed(403, error_envelope(5035, "This model is not available on the Free plan")),
    "bad_token": fixed(401, error_envelope(10000, "Authentication error")),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_each_retryable_failure_fails_over_to_the_next_account(proxy, up: FakeUpstreams, failure: str
                                                                    ) -> None:
    up.account(MAIN).models[MODEL] = FAILURES[failure]
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat())
    assert text_of(response) == f"hello from {BACKUP}"
    assert response.headers["x-cfai-upstream"] == "backup"
    assert response.headers["x-cfai-model"] == MODEL
    assert up.who() == [f"{MAIN}/cf-main-token-value", f"{BACKUP}/backup-token-one"]  # no retries before failing over


async def test_a_hanging_target_fails_over_after_its_upstreams_own_timeout(up: FakeUpstreams, tmp_path: Path
                                                                          ) -> None:
    async def hang(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    config = CONFIG.replace('api_token_env = ["BACKUP_TOKEN", "BACKUP_TOKEN_2"]', 'api_token_env = "BACKUP_TOKEN"\n'
                            'timeout = 0.3')
    (tmp_path / "config.toml").write_text(config + f'backup-first = ["backup:{MODEL}", "cloudflare:{MODEL}"]\n')
    up.account(BACKUP).models[MODEL] = hang
    settings = load_settings({"account_id": MAIN, "api_token": "t0", "timeout": 5},
                             environ={"CFAI_HOME": str(tmp_path), "BACKUP_TOKEN": "b1"})
    app = create_app(settings, no_auth=True, transport=up.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.post("/v1/chat/completions", json=chat(model="backup-first"))
        elapsed = loop.time() - started
    assert text_of(response) == f"hello from {MAIN}"
    assert elapsed < 2.0  # the backup's 0.3 s, not the global 5 s


async def test_a_hang_on_the_default_account_times_out_then_the_backup_answers(tmp_path: Path,
                                                                               up: FakeUpstreams) -> None:
    """The global timeout bounds each attempt, so a hang costs one timeout, then the next account answers."""
    async def hang(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    up.account(MAIN).models[MODEL] = hang
    (tmp_path / "config.toml").write_text(CONFIG)
    fast_timeout = load_settings({"account_id": MAIN, "api_token": "t0", "timeout": 0.3},
                                 environ={"CFAI_HOME": str(tmp_path), "BACKUP_TOKEN": "b1"})
    app = create_app(fast_timeout, no_auth=True, transport=up.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        response = await client.post("/v1/chat/completions", json=chat())
    assert text_of(response) == f"hello from {BACKUP}"
    assert response.headers["x-cfai-upstream"] == "backup"


@pytest.mark.parametrize("status, code", [(400, 5006), (413, 3006), (400, 3030)])
async def test_client_errors_are_not_failed_over(proxy, up: FakeUpstreams, status: int, code: int) -> None:
    up.account(MAIN).models[MODEL] = fixed(status, error_envelope(code, "Bad input: 'messages' is wrong"))
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat())
        health = (await client.get("/health?detail=1")).json()
    assert response.status_code == status
    assert up.who() == [f"{MAIN}/cf-main-token-value"]
    main = next(u for u in health["upstreams"] if u["name"] == "cloudflare")
    assert main["state"] == "ok" and main["keys"][0]["failures"] == 0


async def test_the_clients_own_key_is_checked_before_any_upstream(proxy, up: FakeUpstreams) -> None:
    async with proxy(auth=False) as client:
        response = await client.post("/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert up.calls == []


async def test_when_every_target_fails_the_last_error_is_answered(proxy, up: FakeUpstreams) -> None:
    for account in (MAIN, BACKUP):
        up.account(account).models[MODEL] = FAILURES["server"]
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"
    # main, backup key 1, backup key 2: the last one (nothing else waiting) gets its usual retries.
    assert up.who()[:3] == [f"{MAIN}/cf-main-token-value", f"{BACKUP}/backup-token-one", f"{BACKUP}/backup-token-two"]
    assert len(up.who()) == 3 + 2


async def test_a_model_the_client_names_that_does_not_exist_rests_nothing(proxy, up: FakeUpstreams) -> None:
    """A typo (or a probe for model names) must not cool a lane down for everyone or fill the cooldown table:
    each request still asks every account, and /health shows no failure. A route's own target that goes
    missing is the configuration's problem, and rests as usual."""
    async with proxy() as client:
        for name in ("@cf/meta/no-such-model", "@cf/meta/no-such-model", "@cf/meta/another-typo"):
            error = (await client.post("/v1/chat/completions", json=chat(name))).json()["error"]
            assert error["code"] == "model_not_found"
        embedded = await client.post("/v1/embeddings", json={"model": "@cf/baai/no-such-bge", "input": "x"})
        assert embedded.status_code == 404
        health = (await client.get("/health?detail=1")).json()
        router = client.app.state.ctx.router  # type: ignore[attr-defined]
        assert all(not state.resting and state.failures == 0 for state in router.cooldowns.lanes.values())
        assert all(key["state"] == "ok" and key["failures"] == 0
                   for upstream in health["upstreams"] if upstream["type"] == "cloudflare" for key in upstream["keys"])
        assert [who.split("/")[0] for who in up.who()] == [MAIN, BACKUP, BACKUP] * 4  # nothing skipped as resting

        up.account(MAIN).models[MODEL] = FAILURES["not_found"]
        assert (await client.post("/v1/chat/completions", json=chat("strict"))).status_code == 404
        main = next(u for u in (await client.get("/health?detail=1")).json()["upstreams"] if u["name"] == "cloudflare")
    assert main["state"] == "cooling_down" and MODEL in main["keys"][0]["cooling_down_until"]


# ---- cooldown and recovery, key rotation --------------------------------------------------------------


async def test_a_failing_account_cools_down_and_recovers(proxy, up: FakeUpstreams, clock: Clock) -> None:
    up.account(MAIN).models[MODEL] = FAILURES["server"]
    async with proxy() as client:
        assert text_of(await client.post("/v1/chat/completions", json=chat())) == f"hello from {BACKUP}"
        up.calls.clear()
        up.account(MAIN).models[MODEL] = native_text(f"hello from {MAIN}")  # it is fine again, but resting
        clock.now += 29
        assert text_of(await client.post("/v1/chat/completions", json=chat())) == f"hello from {BACKUP}"
        assert up.who() == [f"{BACKUP}/backup-token-one"]  # the resting account was not even tried
        health = (await client.get("/health?detail=1")).json()
        main = next(u for u in health["upstreams"] if u["name"] == "cloudflare")
        assert main["state"] == "cooling_down"
        assert MODEL in main["keys"][0]["cooling_down_until"]
        assert main["keys"][0]["last_error"]["kind"] == "server"
        clock.now += 2
        up.calls.clear()
        response = await client.post("/v1/chat/completions", json=chat())
        assert text_of(response) == f"hello from {MAIN}"
        assert response.headers["x-cfai-upstream"] == "cloudflare"
        health = (await client.get("/health?detail=1")).json()
    assert next(u for u in health["upstreams"] if u["name"] == "cloudflare")["state"] == "ok"


async def test_retry_after_sets_the_rest_and_a_quota_rests_every_model_of_the_account(
        proxy, up: FakeUpstreams, clock: Clock) -> None:
    up.account(MAIN).models[MODEL] = fixed(429, error_envelope(3001, "slow down"), headers={"retry-after": "120"})
    async with proxy() as client:
        await client.post("/v1/chat/completions", json=chat())
        clock.now += 60  # past the 30 s cooldown, within Retry-After
        up.calls.clear()
        await client.post("/v1/chat/completions", json=chat())
        assert up.who() == [f"{BACKUP}/backup-token-one"]
        # A rate limit rests that model only: another model still goes to the main account first.
        up.calls.clear()
        assert text_of(await client.post("/v1/chat/completions", json=chat(SMALL))) == f"small from {MAIN}"
        # A daily quota rests the whole account, every model.
        up.account(MAIN).models[SMALL] = FAILURES["quota"]
        await client.post("/v1/chat/completions", json=chat(SMALL))
        up.calls.clear()
        clock.now += 3600
        up.account(MAIN).models[SMALL] = native_text("unused")
        up.account(MAIN).models[MODEL] = native_text("unused")
        assert text_of(await client.post("/v1/chat/completions", json=chat())) == f"hello from {BACKUP}"
        assert up.who() == [f"{BACKUP}/backup-token-one"]


async def test_keys_of_an_upstream_rotate_on_429(proxy, up: FakeUpstreams) -> None:
    up.account(MAIN).models[MODEL] = FAILURES["capacity"]

    def by_token(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if request.headers["authorization"] == "Bearer backup-token-one":
            return fixed(429, error_envelope(3001, "rate limited"))(request, body)
        return native_text("from the second key")(request, body)

    up.account(BACKUP).models[MODEL] = by_token
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat())
        assert text_of(response) == "from the second key"
        assert response.headers["x-cfai-upstream"] == "backup#2"
        up.calls.clear()
        response = await client.post("/v1/chat/completions", json=chat())
    assert up.who() == [f"{BACKUP}/backup-token-two"]  # both resting ones skipped


async def test_when_all_targets_rest_the_one_that_rests_least_is_tried(proxy, up: FakeUpstreams,
                                                                       clock: Clock) -> None:
    up.account(MAIN).models[MODEL] = fixed(429, error_envelope(3001, "x"), headers={"retry-after": "50"})
    up.account(BACKUP).models[MODEL] = fixed(429, error_envelope(3001, "x"), headers={"retry-after": "10"})
    async with proxy() as client:
        first = await client.post("/v1/chat/completions", json=chat())
        assert first.status_code == 429
        up.calls.clear()
        up.account(BACKUP).models[MODEL] = native_text("back")
        response = await client.post("/v1/chat/completions", json=chat())
    assert text_of(response) == "back"
    assert len(up.calls) == 1  # one try, not a stampede on every resting target


# ---- streams ---------------------------------------------------------------------------------------


async def test_a_stream_fails_over_before_its_first_byte(proxy, up: FakeUpstreams) -> None:
    up.account(MAIN).models[MODEL] = FAILURES["capacity"]
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.status_code == 200
    assert response.headers["x-cfai-upstream"] == "backup"
    text, _ = stream_text(response.text)
    assert text == f"hello from {BACKUP}"
    assert response.text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("broken", [
    sse({"response": "Hello"}, {"response": " wor"}, done=False),  # cut short, no [DONE]
    sse({"response": "Hello"}, {"error": "AiError: something broke mid-way"}),  # an error event
])
async def test_a_failure_mid_stream_ends_it_with_an_error_never_another_models_answer(
        proxy, up: FakeUpstreams, broken: bytes) -> None:
    up.account(MAIN).models[MODEL] = lambda request, body: sse_response(broken)
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat(stream=True))
    text, events = stream_text(response.text)
    assert text.startswith("Hello")
    assert "from" not in text  # nothing from the backup spliced in
    assert any("error" in e for e in events)
    assert "data: [DONE]" not in response.text  # a truncated answer never looks complete
    assert up.who() == [f"{MAIN}/cf-main-token-value"]


# ---- routes and pass-through providers --------------------------------------------------------------


def groq_provider(up: FakeUpstreams, *, fail_first: int = 0) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        seen.append(body)
        assert request.url.path == "/openai/v1/chat/completions"
        tool = {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
        if body.get("stream"):
            deltas = [{"role": "assistant", "content": ""},
                      {"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                       "function": {"name": "get_weather", "arguments": ""}}]},
                      {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
                      {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}]
            if not body.get("tools"):
                deltas = [{"role": "assistant", "content": "Hej"}, {"content": " från Groq ✓"}]
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  content=openai_chunks(body["model"], deltas,
                                                        "tool_calls" if body.get("tools") else "stop"))
        if body.get("tools"):
            return httpx.Response(200, json=openai_completion(None, model=body["model"], tool_calls=[tool]))
        return httpx.Response(200, json=openai_completion("Hej från Groq", model=body["model"]))

    up.providers["groq.test"] = handle
    return seen


async def test_a_route_fails_over_from_workers_ai_to_an_openai_compatible_provider(proxy, up: FakeUpstreams) -> None:
    seen = groq_provider(up)
    for account in (MAIN, BACKUP):
        up.account(account).models[SMALL] = FAILURES["quota"]
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat("fast", temperature=0.2, seed=7,
                                                                        user="u-1", logit_bias={"50256": -100}))
        assert text_of(response) == "Hej från Groq"
        assert response.headers["x-cfai-upstream"] == "groq"
        assert response.headers["x-cfai-model"] == "llama-3.1-8b-instant"
    # The provider got what the client sent, only the model renamed.
    assert seen[0] == {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": "hi"}],
                       "temperature": 0.2, "seed": 7, "user": "u-1", "logit_bias": {"50256": -100}}
    assert seen[0]["model"] == "llama-3.1-8b-instant"
    assert [who.split("/")[0] for who in up.who()] == [MAIN, BACKUP, BACKUP, "groq.test"]
    assert up.calls[-1][1] == "groq-secret-key-123"


async def test_pass_through_keeps_streaming_and_tool_calls_intact_for_the_openai_sdk(proxy, up: FakeUpstreams
                                                                                    ) -> None:
    groq_provider(up)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    async with proxy() as client:
        sdk = openai.AsyncOpenAI(api_key=client.headers["authorization"][7:], base_url="http://proxy.test/v1",
                                 http_client=client)
        done = await sdk.chat.completions.create(model="only-groq", messages=[{"role": "user", "content": "w?"}],
                                                 tools=tools)  # type: ignore[arg-type]
        call = done.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert (call.id, call.function.name, call.function.arguments) == ("call_9", "get_weather", '{"city":"Oslo"}')
        assert done.choices[0].finish_reason == "tool_calls"
        stream = await sdk.chat.completions.create(model="only-groq", messages=[{"role": "user", "content": "w?"}],
                                                   tools=tools, stream=True)  # type: ignore[arg-type]
        arguments, names, finish = "", [], None
        async for chunk in stream:
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    names += [delta.function.name] if delta.function and delta.function.name else []
                    arguments += delta.function.arguments or "" if delta.function else ""
                finish = choice.finish_reason or finish
        assert (names, arguments, finish) == (["get_weather"], '{"city":"Oslo"}', "tool_calls")
        text_stream = await sdk.chat.completions.create(model="only-groq", stream=True,
                                                        messages=[{"role": "user", "content": "hi"}])
        text = "".join([c.choices[0].delta.content or "" async for c in text_stream if c.choices])
    assert text == "Hej från Groq ✓"


@pytest.mark.parametrize("stream", [False, True])
async def test_pass_through_forwards_openai_fields_and_configured_extras_only(proxy, up: FakeUpstreams,
                                                                             stream: bool) -> None:
    """A client must not steer a provider with its own routing fields (OpenRouter's provider, models, route,
    transforms...): only CreateChatCompletionRequest's fields go on, plus what [upstreams.groq] extra_fields
    names ("provider" here)."""
    seen = groq_provider(up)
    sent = chat("only-groq", stream=stream, temperature=0.5, max_completion_tokens=20, metadata={"a": "b"},
                provider={"order": ["Cheap"]}, models=["x/y", "z/w"], route="fallback", transforms=["middle-out"],
                plugins=[{"id": "web"}], **{"x-anything": 1})
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=sent)
        assert response.status_code == 200, response.text
    expected = {"model": "llama-3.3-70b-versatile", "messages": sent["messages"], "temperature": 0.5,
                "max_completion_tokens": 20, "metadata": {"a": "b"}, "provider": {"order": ["Cheap"]}}
    if stream:  # cfai asks for usage so the key's token limits count what the stream spent
        expected.update(stream=True, stream_options={"include_usage": True})
    assert seen[0] == expected


async def test_routes_serve_the_responses_and_completions_endpoints_too(proxy, up: FakeUpstreams) -> None:
    groq_provider(up)
    async with proxy() as client:
        responses = await client.post("/v1/responses", json={"model": "only-groq", "input": "hi"})
        completions = await client.post("/v1/completions", json={"model": "only-groq", "prompt": "hi"})
    assert responses.status_code == 200, responses.text
    assert responses.json()["output_text"] == "Hej från Groq"
    assert responses.json()["model"] == "only-groq"
    assert responses.headers["x-cfai-upstream"] == "groq"
    assert completions.json()["choices"][0]["text"] == "Hej från Groq"


async def test_a_provider_failure_before_the_stream_starts_is_an_openai_error(proxy, up: FakeUpstreams) -> None:
    up.providers["groq.test"] = lambda request, body: httpx.Response(
        429, json={"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": None}},
        headers={"retry-after": "3"})
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat("only-groq", stream=True))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert "groq" in response.json()["error"]["message"]


async def test_an_upstream_without_its_key_is_skipped_and_said_so(proxy, up: FakeUpstreams) -> None:
    up.account(MAIN).models[MODEL] = FAILURES["server"]
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat("strict"))
        health = (await client.get("/health?detail=1")).json()
    assert response.status_code == 502  # the only other target has no key: the main failure is the answer
    spare = next(u for u in health["upstreams"] if u["name"] == "spare")
    assert spare["state"] == "unavailable"
    assert spare["keys"][0]["reason"] == "$SPARE_KEY_NOT_SET is not set"


# ---- what the proxy tells about routing -----------------------------------------------------------------


async def test_health_lists_each_upstream_and_key_without_secrets(proxy, up: FakeUpstreams) -> None:
    up.account(MAIN).models[MODEL] = FAILURES["bad_token"]
    async with proxy() as client:
        await client.post("/v1/chat/completions", json=chat())
        short = await client.get("/health", headers={"Authorization": ""})
        response = await client.get("/health?detail=1")
    assert short.status_code == 200
    assert short.json() == {"status": "ok", "upstreams": [
        {"name": "cloudflare", "state": "cooling_down"}, {"name": "backup", "state": "ok"},
        {"name": "groq", "state": "ok"}, {"name": "spare", "state": "unavailable"}]}
    assert response.status_code == 200
    body = response.json()
    assert [(u["name"], u["type"], len(u["keys"])) for u in body["upstreams"]] == [
        ("cloudflare", "cloudflare", 1), ("backup", "cloudflare", 2), ("groq", "openai", 1), ("spare", "openai", 1)]
    main = body["upstreams"][0]
    assert main["keys"][0]["last_error"]["kind"] == "auth"
    assert "all models" in main["keys"][0]["cooling_down_until"]
    assert body["upstreams"][1]["keys"][0]["served"] == 1
    for secret in (*SECRETS, MAIN, BACKUP):
        assert secret not in response.text


async def test_route_check_shows_the_chain(proxy, up: FakeUpstreams) -> None:
    async with proxy() as client:
        fast = (await client.get("/v1/route-check", params={"model": "fast"})).json()
        plain = (await client.get("/v1/route-check", params={"model": "gpt-4o"})).json()
        missing = await client.get("/v1/route-check")
        unknown = await client.get("/v1/route-check", params={"model": "no-such-thing"})
    assert fast["route"] == "fast"
    assert [(t["upstream"], t["model"], t["type"]) for t in fast["targets"]] == [
        ("cloudflare", SMALL, "cloudflare"), ("backup", SMALL, "cloudflare"),
        ("groq", "llama-3.1-8b-instant", "openai")]
    assert fast["targets"][1]["keys"][1]["state"] == "ok"
    assert plain["route"] is None and [t["upstream"] for t in plain["targets"]] == ["cloudflare", "backup"]
    assert missing.status_code == 400 and unknown.status_code == 404
    for secret in SECRETS:
        assert secret not in json.dumps(fast)


async def test_route_check_needs_a_key(proxy) -> None:
    async with proxy(auth=False) as client:
        response = await client.get("/v1/route-check", params={"model": "fast"})
    assert response.status_code == 401


async def test_usage_rows_name_the_upstream_that_answered(proxy, up: FakeUpstreams, settings: Settings) -> None:
    groq_provider(up)
    up.account(MAIN).models[MODEL] = FAILURES["capacity"]
    async with proxy() as client:
        await client.post("/v1/chat/completions", json=chat())
        await client.post("/v1/chat/completions", json=chat("only-groq", stream=True))
        await client.post("/v1/embeddings", json={"model": "@cf/baai/bge-m3", "input": "x"})
        await client.app.state.recorder.flush()  # type: ignore[attr-defined]
    rows = UsageLog(settings.database).rows(since=0)
    assert [(r.route, r.upstream, r.upstream_model) for r in rows][:2] == [
        ("chat/completions", "backup", MODEL), ("chat/completions", "groq", "llama-3.3-70b-versatile")]
    by_upstream = {s.group: s.requests for s in UsageLog(settings.database).summarise(since=0, by="upstream")}
    assert by_upstream["backup"] == 1 and by_upstream["groq"] == 1


async def test_other_endpoints_fail_over_between_accounts_for_the_same_model(proxy, up: FakeUpstreams) -> None:
    up.account(MAIN).models["@cf/baai/bge-m3"] = FAILURES["quota"]
    up.account(BACKUP).models["@cf/baai/bge-m3"] = lambda request, body: httpx.Response(200, json={
        "result": {"shape": [1, 3], "data": [[0.1, 0.2, 0.3]], "pooling": "cls"}, "success": True, "errors": []})
    async with proxy() as client:
        response = await client.post("/v1/embeddings", json={"model": "@cf/baai/bge-m3", "input": "x"})
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["embedding"] == [0.1, 0.2, 0.3]
    assert response.headers["x-cfai-upstream"] == "backup"


async def test_tool_calls_from_workers_ai_still_work_through_a_route(proxy, up: FakeUpstreams) -> None:
    up.account(MAIN).models[SMALL] = native_tool_call("get_weather", {"city": "Oslo"})
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat("fast", tools=[{
            "type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]))
    call = response.json()["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert response.headers["x-cfai-upstream"] == "cloudflare"


async def test_tokenize_counts_with_a_routes_first_model(proxy) -> None:
    async with proxy() as client:
        response = await client.post("/v1/tokenize", json={"model": "fast", "input": "hello world"})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == SMALL


async def test_routes_are_listed_as_models(proxy) -> None:
    async with proxy() as client:
        listed = (await client.get("/v1/models")).json()["data"]
        one = await client.get("/v1/models/fast")
    routes = {m["id"] for m in listed if m["owned_by"] == "cfai-route"}
    assert routes == {"fast", "only-groq", "strict"}
    assert one.status_code == 200 and one.json()["id"] == "fast"


@pytest.mark.parametrize("first", [
    sse({"error": "AiError: Capacity temporarily exceeded"}),  # an error before any content
    sse({"success": False, "errors": [{"code": 3040, "message": "Out of capacity"}]}),
    b"",  # a 200 stream that ends before its first event
])
async def test_a_stream_that_fails_before_its_first_event_still_fails_over(proxy, up: FakeUpstreams,
                                                                          first: bytes) -> None:
    up.account(MAIN).models[MODEL] = lambda request, body: sse_response(first)
    async with proxy() as client:
        response = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.status_code == 200
    assert response.headers["x-cfai-upstream"] == "backup"
    text, events = stream_text(response.text)
    assert text == f"hello from {BACKUP}" and not any("error" in e for e in events)
    assert up.who() == [f"{MAIN}/cf-main-token-value", f"{BACKUP}/backup-token-one"]


async def test_with_one_target_an_error_before_the_first_event_is_a_clean_http_error(proxy, up: FakeUpstreams
                                                                                   ) -> None:
    up.providers["groq.test"] = lambda request, body: httpx.Response(500, json={"error": {"message": "down"}})
    async with proxy() as client:
        # "strict": the main account, then "spare" whose key is not set: one usable target.
        up.account(MAIN).models[MODEL] = lambda request, body: sse_response(sse({"error": "AiError: broken"}))
        response = await client.post("/v1/chat/completions", json=chat("strict", stream=True))
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")
    assert "broken" in response.json()["error"]["message"]


async def test_a_provider_stream_that_opens_with_an_error_event_fails_over(proxy, up: FakeUpstreams,
                                                                           tmp_path: Path) -> None:
    config = CONFIG + 'groq-first = ["groq:llama-3.1-8b-instant", "cloudflare:' + MODEL + '"]\n'
    (tmp_path / "config.toml").write_text(config)
    up.providers["groq.test"] = lambda request, body: httpx.Response(
        200, headers={"content-type": "text/event-stream"},
        content=b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n')
    settings = load_settings({"account_id": MAIN, "api_token": "t0", "timeout": 5},
                             environ={"CFAI_HOME": str(tmp_path), "GROQ_API_KEY": "k"})
    app = create_app(settings, no_auth=True, transport=up.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        response = await client.post("/v1/chat/completions", json=chat("groq-first", stream=True))
    assert response.headers["x-cfai-upstream"] == "cloudflare"
    assert stream_text(response.text)[0] == f"hello from {MAIN}"


async def test_vision_aliases_apply_inside_routes_but_never_to_ids_or_providers(up: FakeUpstreams,
                                                                                tmp_path: Path) -> None:
    gemma, mistral, oss = "@cf/google/gemma-4-26b-a4b-it", "@cf/mistralai/mistral-small-3.1-24b-instruct", \
        "@cf/openai/gpt-oss-120b"
    (tmp_path / "config.toml").write_text(
        CONFIG + f'seeing = ["cloudflare:gpt-5-2025-08-07", "backup:gpt-4o-mini", "{oss}", "groq:gpt-5"]\n')
    settings = load_settings({"account_id": MAIN, "api_token": "cf-main-token-value", "timeout": 5},
                             environ={"CFAI_HOME": str(tmp_path), "GROQ_API_KEY": "groq-secret-key-123",
                                      "BACKUP_TOKEN": "b1", "BACKUP_TOKEN_2": "b2"})
    key, _ = KeyStore(settings.database).create("tests")
    up.account(MAIN).models[gemma] = native_text("gemma sees it")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    app = create_app(settings, transport=up.transport())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
            headers={"Authorization": f"Bearer {key}"}) as client:
        seeing = (await client.get("/v1/route-check", params={"model": "seeing", "vision": "true"})).json()
        text = (await client.get("/v1/route-check", params={"model": "seeing"})).json()
        answer = await client.post("/v1/chat/completions", json={
            "model": "seeing", "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, image]}]})
    assert [(t["upstream"], t["model"]) for t in seeing["targets"]] == [
        ("cloudflare", gemma), ("backup", mistral), ("cloudflare", oss), ("backup", oss), ("groq", "gpt-5")]
    assert [t["model"] for t in text["targets"]] == [oss, SMALL, oss, oss, "gpt-5"]
    assert text_of(answer) == "gemma sees it" and answer.headers["x-cfai-model"] == gemma
