"""Keys, permissions, limits, usage log, metrics and hardening of `cfai serve`, proven through HTTP."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings
from cfai_cli.store.keys import SCOPES, KeyPolicy, KeyStore
from cfai_cli.store.usage import UsageLog
from tests.fake_workers import FakeWorkers, native_text
from tests.openai_schema import validate
from tests.server.conftest import offline

pytestmark = pytest.mark.anyio

LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi there"}]}


def key_for(settings: Settings, **policy: Any) -> tuple[str, str]:
    key, record = KeyStore(settings.database).create("t", KeyPolicy(**policy))
    return key, record.id


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_only_hashes_on_disk_after_use(settings: Settings) -> None:
    key, _ = key_for(settings)
    async with offline(settings) as client:
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))).status_code == 200
    stored = b"".join(p.read_bytes() for p in Path(settings.data_dir).rglob("*") if p.is_file())
    assert key.encode() not in stored and key[8:].encode() not in stored


async def test_expired_keys_are_refused(settings: Settings) -> None:
    expired, _ = key_for(settings, expires_at=int(time.time()) - 1)
    fresh, _ = key_for(settings, expires_at=int(time.time()) + 3600)
    async with offline(settings) as client:
        assert (await client.get("/v1/models", headers=bearer(expired))).status_code == 401
        assert (await client.get("/v1/models", headers=bearer(fresh))).status_code == 200


async def test_rate_limit_is_exact_under_concurrency(settings: Settings) -> None:
    key, _ = key_for(settings, rpm=5)
    async with offline(settings) as client:
        answers = await asyncio.gather(*(client.get("/v1/models", headers=bearer(key)) for _ in range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 5 + [429] * 15
    refused = next(a for a in answers if a.status_code == 429)
    validate(refused.json(), "ErrorResponse")
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit-requests"] == "5"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    ok = next(a for a in answers if a.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == "5" and "x-ratelimit-reset-requests" in ok.headers


async def test_tokens_per_minute(settings: Settings) -> None:
    key, _ = key_for(settings, tpm=20)
    async with offline(settings) as client:
        first = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert first.status_code == 200 and first.json()["usage"]["total_tokens"] >= 20
        second = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"


@pytest.mark.parametrize(("scopes", "path", "allowed"), [
    (["chat"], "/v1/chat/completions", True),
    (["chat"], "/v1/embeddings", False),
    (["chat"], "/v1/models", False),
    (["embeddings", "models"], "/v1/models", True),
    (["chat", "models"], "/metrics", False),
    (["admin"], "/metrics", True),
    (["images"], "/v1/images/generations", True),
    (["chat"], "/v1/images/generations", False),
    (["chat"], "/v1/moderations", True),
    (["embeddings", "models"], "/v1/moderations", False),
])
async def test_scopes_per_route(settings: Settings, scopes: list[str], path: str, allowed: bool) -> None:
    key, _ = key_for(settings, scopes=frozenset(scopes))
    bodies = {"/v1/chat/completions": CHAT, "/v1/embeddings": {"model": "text-embedding-3-small", "input": "x"},
              "/v1/images/generations": {"prompt": "a fox"}, "/v1/moderations": {"input": "hello"}}
    async with offline(settings) as client:
        if path in bodies:
            response = await client.post(path, json=bodies[path], headers=bearer(key))
        else:
            response = await client.get(path, headers=bearer(key))
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "insufficient_scope"


async def test_model_patterns(settings: Settings) -> None:
    key, _ = key_for(settings, models=("gpt-4o-mini", "@cf/zai-org/*"))
    async with offline(settings) as client:
        ok = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        by_pattern = await client.post("/v1/chat/completions", headers=bearer(key),
                                       json={**CHAT, "model": "@cf/zai-org/glm-4.7-flash"})
        refused = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o"}, headers=bearer(key))
        streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=bearer(key))
    assert ok.status_code == 200 and by_pattern.status_code == 200
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")


async def test_every_request_with_a_key_is_in_the_usage_log(settings: Settings) -> None:
    key, key_id = key_for(settings)
    async with offline(settings) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=CHAT, headers=bearer(key)) for _ in range(25)),
            *(client.post("/v1/chat/completions", json={**CHAT, "model": "nope"}, headers=bearer(key))
              for _ in range(5)),
            client.get("/v1/models"))  # no key: counted in the metrics, never a row
    assert sorted(a.status_code for a in answers) == [200] * 25 + [401] + [404] * 5
    rows = UsageLog(settings.database).rows(since=0)  # the recorder flushed at shutdown
    assert len(rows) == 30
    ok = [r for r in rows if r.status == 200]
    assert all(r.key_id == key_id and r.route == "chat/completions" and r.model == "gpt-4o-mini" for r in ok)
    assert all(r.upstream_model == "@cf/meta/llama-3.1-8b-instruct-fast" and r.completion_tokens > 0 for r in ok)
    assert {r.error_code for r in rows if r.status == 404} == {"model_not_found"}
    assert all(r.key_id == key_id for r in rows)
    summary = {s.group: s for s in UsageLog(settings.database).summarise(since=0, by="route")}
    assert summary["chat/completions"].requests == 30 and summary["chat/completions"].errors == 5


async def test_metrics_are_prometheus_text(settings: Settings) -> None:
    admin, _ = key_for(settings, scopes=frozenset(SCOPES))
    async with offline(settings) as client:
        for _ in range(3):
            await client.post("/v1/chat/completions", json=CHAT, headers=bearer(admin))
        await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"}, headers=bearer(admin))
        text = (await client.get("/metrics", headers=bearer(admin))).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["route"], s.labels["status"]): s.value for s in families["cfai_requests"].samples}
    assert requests[("/v1/chat/completions", "200")] == 3 and requests[("/v1/chat/completions", "404")] == 1
    assert families["cfai_request_duration_seconds"].type == "histogram"
    tokens = {s.labels["type"]: s.value for s in families["cfai_tokens"].samples}
    assert tokens["completion"] > 0
    assert "cfai_upstream_retries" in families


async def test_security_headers_everywhere(settings: Settings, api_key: str) -> None:
    async with offline(settings) as client:
        answers = [await client.get("/health"), await client.get("/v1/models"),
                   await client.post("/v1/chat/completions", json=CHAT, headers=bearer(api_key)),
                   await client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=bearer(api_key)),
                   await client.get("/v1/nothing", headers=bearer(api_key))]
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"


async def test_cors_preflight_only_when_configured(settings: Settings, api_key: str) -> None:
    preflight = {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    async with offline(settings) as client:
        closed = await client.options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    async with offline(settings, cors_origins="http://localhost:5173") as client:
        opened = await client.options("/v1/chat/completions", headers=preflight)
        other = await client.options("/v1/chat/completions", headers={**preflight, "Origin": "http://evil.test"})
        real = await client.post("/v1/chat/completions", json=CHAT,
                                 headers={**bearer(api_key), "Origin": "http://localhost:5173"})
    assert opened.status_code == 200
    assert opened.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "authorization" in opened.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in opened.headers
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert real.headers["access-control-allow-origin"] == "http://localhost:5173"


async def test_concurrency_cap_answers_503(settings: Settings, api_key: str) -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return native_text("done")(request, {})

    fake = FakeWorkers(models={LLAMA: lambda r, b: httpx.Response(500)})
    app = create_app(replace(settings, max_concurrency=2), transport=httpx.MockTransport(slow))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test", headers=bearer(api_key)) as client:
        waiting = [asyncio.create_task(client.post("/v1/chat/completions", json={**CHAT, "model": LLAMA}))
                   for _ in range(2)]
        await asyncio.sleep(0.2)
        refused = await client.post("/v1/chat/completions", json={**CHAT, "model": LLAMA})
        release.set()
        finished = await asyncio.gather(*waiting)
    assert fake.calls == []
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    assert [f.status_code for f in finished] == [200, 200]


async def test_the_cloudflare_token_never_reaches_a_client_or_the_log(settings: Settings, api_key: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"unexpected failure with headers {dict(request.headers)}")

    app = create_app(settings, transport=httpx.MockTransport(boom))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://proxy.test",
            headers=bearer(api_key)) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "model": LLAMA})
    assert response.status_code == 500
    assert "cf-secret-token-value" not in response.text
    assert response.json()["error"]["message"] == "The proxy hit an internal error; see its log."
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "unexpected failure" in logged and "cf-secret-token-value" not in logged


async def test_json_bodies_have_their_own_smaller_limit(settings: Settings, api_key: str) -> None:
    from tests.audio_fixtures import tone_wav

    async with offline(settings, max_json_mb=0.01, max_body_mb=1.0) as client:
        json_body = {**CHAT, "messages": [{"role": "user", "content": "x" * 20_000}]}
        too_big = await client.post("/v1/chat/completions", json=json_body, headers=bearer(api_key))
        upload = await client.post("/v1/audio/transcriptions", headers=bearer(api_key),
                                   files={"file": ("a.wav", tone_wav(1.0), "audio/wav")},
                                   data={"model": "whisper-1"})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"
    assert upload.status_code == 200, upload.text


async def test_stored_responses_are_private_to_the_key_that_made_them(settings: Settings) -> None:
    alice, _ = key_for(settings)
    bob, _ = key_for(settings)
    async with offline(settings) as client:
        made = (await client.post("/v1/responses", json={"model": "gpt-4o-mini", "input": "secret plans"},
                                  headers=bearer(alice))).json()
        rid = made["id"]
        assert (await client.get(f"/v1/responses/{rid}", headers=bearer(alice))).status_code == 200
        for method, path in (("GET", f"/v1/responses/{rid}"), ("GET", f"/v1/responses/{rid}/input_items"),
                             ("DELETE", f"/v1/responses/{rid}")):
            other = await client.request(method, path, headers=bearer(bob))
            assert other.status_code == 404 and "secret" not in other.text
        hijack = await client.post("/v1/responses", headers=bearer(bob), json={
            "model": "gpt-4o-mini", "input": "go on", "previous_response_id": rid})
        assert hijack.status_code == 404 and hijack.json()["error"]["param"] == "previous_response_id"
        assert (await client.get(f"/v1/responses/{rid}", headers=bearer(alice))).status_code == 200
