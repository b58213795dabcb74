"""Bad input never gets a 5xx or a traceback: always a 4xx OpenAI error body (or a normal answer).

Table-driven cases for every JSON route (broken JSON, non-object bodies, invalid UTF-8, deep nesting, a wrong
type in every field of the route's schema, huge strings, 10k messages, wrong content types, odd headers,
unknown routes and methods), then a hypothesis fuzzer driven by the proxy's own `/openapi.json`: bodies of
random shape built from each operation's property names, with values of every JSON type. The upstream is a
fake that answers every model family correctly, so any 5xx is the proxy's own failure.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from cfai_cli.emulator.images import png
from cfai_cli.server.app import create_app
from cfai_cli.settings import load_settings
from cfai_cli.store.keys import SCOPES, KeyPolicy, KeyStore
from tests.audio_fixtures import mp3_frames, tone_wav
from tests.fake_workers import envelope, error_envelope, native_text
from tests.openai_schema import validate

# Bounded so the suite stays fast; CFAI_FUZZ_EXAMPLES=5000 for a longer hunt.
FUZZ_EXAMPLES = int(os.environ.get("CFAI_FUZZ_EXAMPLES", "300"))
MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-5", "text-embedding-3-small", "dall-e-3", "whisper-1", "tts-1",
          "@cf/meta/llama-3.3-70b-instruct-fp8-fast", "@cf/baai/bge-m3", "@cf/unknown/model", "x", ""]


_FAMILIES = [("rerank", ("reranker",)), ("embed", ("bge", "embedding")),
             ("image", ("flux", "diffusion", "dreamshaper", "lucid", "phoenix")),
             ("asr", ("whisper", "nova")), ("tts", ("melotts", "aura")), ("translate", ("m2m100",)),
             ("guard", ("llama-guard",))]
_NOT_CHAT = {"steps", "num_steps", "width", "height", "lang", "negative_prompt", "text", "contexts", "audio"}


def upstream(request: httpx.Request) -> httpx.Response:
    """Workers AI, plausibly: each model family answers its own shape and refuses others' (5006), as it does."""
    path = request.url.path
    if path.endswith("/models/search"):
        return httpx.Response(200, json={**envelope([]), "result_info": {"page": 1}})
    model = path.split("/ai/run/", 1)[1]
    is_json = request.headers.get("content-type", "").startswith("application/json")
    body: dict[str, Any] = json.loads(request.content or b"{}") if is_json else {}
    if "unknown" in model:
        return httpx.Response(400, json=error_envelope(5007, f"No such model {model}"))
    family = next((name for name, marks in _FAMILIES if any(m in model for m in marks)), "chat")
    fits = {"rerank": "query" in body and isinstance(body.get("contexts"), list),
            "embed": "text" in body or "contexts" in body, "image": "prompt" in body,
            "asr": not is_json or "audio" in body,
            "tts": {"prompt", "lang"} <= set(body) or {"text", "speaker"} <= set(body),
            "translate": "target_lang" in body, "guard": "messages" in body,
            "chat": "messages" in body or ("prompt" in body and not _NOT_CHAT & set(body))}[family]
    if not fits:
        return httpx.Response(400, json=error_envelope(5006, "AiError: Bad input: this model takes another shape"))
    if family == "rerank" or (family == "embed" and "query" in body and isinstance(body.get("contexts"), list)):
        # bge-m3 ranks too: a query with contexts answers scores, as the rerankers do (reference, bge-m3 modes)
        return httpx.Response(200, json=envelope({"response": [{"id": i, "score": 0.5}
                                                               for i in range(len(body["contexts"]))]}))
    if family == "embed":
        texts = body.get("text", body.get("contexts"))
        count = len(texts) if isinstance(texts, list) else 1
        return httpx.Response(200, json=envelope({"shape": [count, 3], "data": [[0.1, 0.2, 0.3]] * count}))
    if family == "image":
        return httpx.Response(200, json=envelope({"image": base64.b64encode(png(4, 4, b"key")).decode()}))
    if family == "asr":
        return httpx.Response(200, json=envelope({"text": "hello", "word_count": 1, "vtt": "WEBVTT\n\n"}))
    if family == "tts":
        return httpx.Response(200, headers={"content-type": "audio/mpeg"}, content=mp3_frames(2))
    if family == "translate":
        return httpx.Response(200, json=envelope({"translated_text": "bonjour"}))
    if family == "guard":
        return httpx.Response(200, json=envelope({"response": {"safe": True, "categories": []}}))
    return native_text("fine thanks")(request, body)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("cfai-fuzz")
    config = load_settings({"account_id": "0123abcd", "api_token": "cf-secret-token-value", "timeout": 5,
                            "max_retries": 0, "max_json_mb": 2.0, "max_body_mb": 4.0},
                           environ={"CFAI_HOME": str(home)})
    key, _ = KeyStore(config.database).create("fuzz", KeyPolicy(scopes=frozenset(SCOPES)))  # admin routes too
    app = create_app(config, transport=httpx.MockTransport(upstream))
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def assert_client_error(response: Any, *, allow_ok: bool = False) -> None:
    """Never a 5xx, never a traceback; a 4xx is an OpenAI error body."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert "Traceback" not in response.text and "cf-secret-token-value" not in response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.headers
        validate(response.json(), "ErrorResponse")
    else:
        assert allow_ok, f"expected a 4xx, got {response.status_code}: {response.text[:300]}"


JSON_ROUTES = ["/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/embeddings",
               "/v1/images/generations", "/v1/audio/speech", "/v1/tokenize", "/v1/moderations", "/chat/completions"]
BROKEN_BODIES = [b"", b"{", b"{not json", b"null", b"[]", b'"x"', b"3", b"true", b"\xff\xfe{}", b"\xc3\x28",
                 b'{"model": "\xed\xa0\x80"}', b"[" * 100_000 + b"]" * 100_000,
                 b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b'{"model": NaN}', b'{"model": "x"} trailing',
                 b'\xef\xbb\xbf{"model": "x"}', json.dumps({"messages": [{"content": "\ud800"}]}).encode()]


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("raw", BROKEN_BODIES, ids=lambda b: repr(b[:16]))
def test_broken_json_bodies(client: TestClient, path: str, raw: bytes) -> None:
    assert_client_error(client.post(path, content=raw, headers={"content-type": "application/json"}))


def _schemas(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    doc = client.get("/openapi.json").json()
    out = []
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            body = operation.get("requestBody")
            if body is None:
                continue
            content_type, media = next(iter(body["content"].items()))
            schema = doc["components"]["schemas"][media["schema"]["$ref"].rsplit("/", 1)[-1]]
            out.append((path, content_type, schema.get("properties", {})))
    return out


VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": "gpt-4o-mini", "input": "hi"},
    "/v1/completions": {"model": "gpt-4o-mini", "prompt": "hi"},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/v1/images/generations": {"model": "dall-e-3", "prompt": "a fox"},
    "/v1/images/edits": {"prompt": "a fox"},
    "/v1/audio/transcriptions": {"model": "whisper-1"},
    "/v1/audio/translations": {"model": "whisper-1"},
    "/v1/audio/speech": {"model": "tts-1", "input": "hi", "voice": "alloy"},
    "/v1/tokenize": {"model": "gpt-4o-mini", "input": "hi"},
    "/v1/moderations": {"model": "omni-moderation-latest", "input": "hi"},
    "/v1/rerank": {"model": "rerank-v3.5", "query": "hi", "documents": ["hi there"]},
    "/v2/rerank": {"model": "rerank-v3.5", "query": "hi", "documents": ["hi there"]},
    "/v1/admin/keys": {"name": "fuzz"},
    "/v1/batches": {"input_file_id": "file-none", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    "/v1/admin/keys/{key_id}": {},  # PATCH: posted here, a 405 (and a client error) is the right answer
}
WRONG_VALUES: list[Any] = [None, True, -1, 1.5, 1e308, "x", "", [], [None], {}, {"x": 1}, "\u0000", "9" * 400]


def test_a_wrong_type_in_every_field_of_every_json_route(client: TestClient) -> None:
    checked = 0
    for path, content_type, properties in _schemas(client):
        if content_type != "application/json":
            continue
        assert properties, path
        for name in properties:
            for value in WRONG_VALUES:
                response = client.post(path, json={**VALID[path], name: value})
                assert response.status_code < 500, (path, name, value, response.text[:300])
                assert_client_error(response, allow_ok=True)  # some values are valid for some fields
                checked += 1
    assert checked > 500


def test_huge_strings_and_10k_messages(client: TestClient) -> None:
    huge = "é" * (1024 * 1024)  # 2 MB of UTF-8: over max_json_mb in this fixture
    assert client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": huge}]}).status_code == 413
    many = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(10_000)]
    assert_client_error(client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": many}),
                        allow_ok=True)
    long_key = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "k" * 500_000: 1}
    assert_client_error(client.post("/v1/chat/completions", json=long_key), allow_ok=True)
    assert_client_error(client.post("/v1/embeddings", json={"model": "text-embedding-3-small",
                                                            "input": ["x"] * 20_000}), allow_ok=True)


def test_wrong_content_types(client: TestClient) -> None:
    form = client.post("/v1/chat/completions", data={"model": "gpt-4o-mini"})
    assert_client_error(form)
    multipart = client.post("/v1/chat/completions", files={"file": ("a.txt", b"x")})
    assert_client_error(multipart)
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/images/edits"):
        assert_client_error(client.post(path, json={"model": "whisper-1"}))
        assert_client_error(client.post(path, content=b"--x\r\n", headers={
            "content-type": "multipart/form-data; boundary=x"}))
        assert_client_error(client.post(path, content=b"garbage", headers={"content-type": "multipart/form-data"}))
        assert_client_error(client.post(path, files={"file": ("a.wav", b"", "audio/wav")}, data={"model": 3}))
        assert_client_error(client.post(path, files={f"f{i}": ("a", b"x") for i in range(20)}))
    ok = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", tone_wav(0.5), "audio/wav")},
                     data={"model": "whisper-1", "temperature": "hot"})
    assert_client_error(ok)


ODD_HEADERS: list[dict[str, str]] = [
    {"content-type": "application/json; charset=utf-16"},
    {"content-type": "text/plain"},
    {"content-type": "application/x-www-form-urlencoded"},
    {"content-type": "multipart/form-data"},
    {"content-type": "\u00e9/\u00e9"},
    {"content-encoding": "gzip"},
    {"accept": "text/html"},
    {"accept-encoding": "br, gzip, zstd"},
    {"x-forwarded-for": "127.0.0.1, ::1, garbage"},
    {"host": "evil.example"},
    {"origin": "https://evil.example"},
    {"x-huge": "a" * 8000},
    {"authorization": "Bearer " + "x" * 5000},
    {"authorization": "Basic dXNlcjpwYXNz"},
    {"authorization": "Bearer"},
    {"api-key": "\u00e9"},
    {"cookie": "session=1; " * 100},
    {"range": "bytes=0-10"},
    {"expect": "100-continue"},
]


@pytest.mark.parametrize("headers", ODD_HEADERS, ids=lambda h: next(iter(h)))
def test_odd_headers(client: TestClient, headers: dict[str, str]) -> None:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    raw = {name: value.encode("utf-8") for name, value in headers.items()}  # non-ASCII bytes go out as they are
    response = client.post("/v1/chat/completions", content=body.encode(), headers=raw)
    assert_client_error(response, allow_ok=True)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/nothing"), ("POST", "/v1/models"), ("PUT", "/v1/chat/completions"),
    ("DELETE", "/v1/embeddings"), ("PATCH", "/v1/responses"), ("GET", "/v1/chat/completions"),
    ("GET", "/v2/chat/completions"), ("GET", "/v1/models/" + "a" * 5000), ("GET", "/v1/../etc/passwd"),
    ("GET", "/v1/images/files/..%2F..%2Fcfai.db"), ("GET", "/v1/images/files/x.png"),
    ("GET", "/v1/responses/resp_missing"), ("GET", "/v1/responses/x/input_items?limit=abc"),
    ("GET", "/v1/responses/x/input_items?limit=99999999999999999999"), ("OPTIONS", "/v1/chat/completions"),
    ("TRACE", "/v1/chat/completions"), ("GET", "/%ff%fe"),
    ("GET", "/v1/route-check"), ("GET", "/v1/route-check?model="), ("GET", "/v1/route-check?model=" + "x" * 5000),
    ("GET", "/v1/route-check?model=..%2F..%2Fetc%2Fpasswd"), ("GET", "/v1/route-check?model=%00"),
    ("POST", "/v1/route-check?model=gpt-4o"),
])
def test_unknown_routes_and_methods(client: TestClient, method: str, path: str) -> None:
    assert_client_error(client.request(method, path))


# ---- the fuzzer ------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=30) | st.sampled_from(MODELS),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["role", "content", "type", "text", "image_url", "url", "name", "arguments", "function",
                         "tool_calls", "id", "format", "schema", "include_usage", "effort", "call_id", "output"])
        | st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@st.composite
def operation_bodies(draw: st.DrawFn, operations: list[tuple[str, str, dict[str, Any]]]
                     ) -> tuple[str, str, dict[str, Any]]:
    path, content_type, properties = draw(st.sampled_from(operations))
    # Half the cases start from a valid request and break a few fields, so they get past validation.
    body: dict[str, Any] = dict(VALID[path]) if draw(st.booleans()) else {}
    names = draw(st.lists(st.sampled_from(sorted(properties)), unique=True, max_size=min(4, len(properties))))
    body.update({name: draw(json_values) for name in names})
    if draw(st.booleans()):
        body["model"] = draw(st.sampled_from(MODELS))
    return path, content_type, body


def test_fuzz_every_operation_of_the_openapi_document(client: TestClient) -> None:
    operations = _schemas(client)
    assert {path for path, _, _ in operations} >= {"/v1/chat/completions", "/v1/responses", "/v1/embeddings"}
    seen: dict[int, int] = {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=operation_bodies(operations))
    def one(case: tuple[str, str, dict[str, Any]]) -> None:
        path, content_type, body = case
        if content_type == "application/json":
            # Python's json writes (and reads) NaN and Infinity: the proxy must refuse them, not choke on them.
            response = client.post(path, content=json.dumps(body).encode(),
                                   headers={"content-type": "application/json"})
        else:
            fields = {k: (None, json.dumps(v) if not isinstance(v, str) else v) for k, v in body.items()}
            upload = ("image" if "images" in path else "file")
            fields[upload] = ("a.wav" if upload == "file" else "a.png",
                              tone_wav(0.2) if upload == "file" else png(4, 4, b"key"), "application/octet-stream")
            response = client.post(path, files=fields)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert_client_error(response, allow_ok=True)

    one()
    assert sum(seen.values()) >= FUZZ_EXAMPLES // 2
    assert any(status < 300 for status in seen), seen  # the fuzzer reaches past validation too
