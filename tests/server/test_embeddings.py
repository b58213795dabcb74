"""POST /v1/embeddings through the proxy: batching order, base64 (the SDK's default), aliases, errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from cfai_cli.server.app import create_app
from tests.fake_workers import FakeWorkers, envelope, error_envelope
from tests.openai_schema import validate
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio


BGE = "@cf/baai/bge-base-en-v1.5"


def vector_for(text: str) -> list[float]:
    """A vector that encodes its text's number, so order mistakes are visible."""
    n = float(text.split("-")[-1]) if "-" in text else float(len(text))
    return [n, n / 2, 0.25]


def embedder(*, delay_for_first_batch: float = 0.0) -> Any:
    async def handle(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        texts = body["text"] if isinstance(body["text"], list) else [body["text"]]
        if len(texts) > 100:
            return httpx.Response(400, json=error_envelope(5006, "AiError: Bad input: too many items"))
        if delay_for_first_batch and texts[0] == "t-0":
            await asyncio.sleep(delay_for_first_batch)  # the first batch finishes last
        return httpx.Response(200, json=envelope({"shape": [len(texts), 3], "data": [vector_for(t) for t in texts],
                                                  "pooling": "mean"}))
    return handle


@pytest.fixture
def sdk(settings, api_key: str, fake: FakeWorkers):  # type: ignore[no-untyped-def]
    async def open_sdk() -> tuple[Any, Any]:
        app = create_app(settings, transport=fake.transport())
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        http = sdk_httpx.AsyncClient(transport=sdk_httpx.ASGITransport(app=app), base_url="http://proxy.test/v1")
        # Not strict: the SDK asks for base64 by default yet its strict model types `embedding` as
        # list[float], so strict validation rejects spec-correct base64 answers (from api.openai.com too).
        client = openai.AsyncOpenAI(api_key=api_key, base_url="http://proxy.test/v1", http_client=http,
                                    max_retries=0)
        return client, (http, lifespan)

    return open_sdk


async def test_large_batches_come_back_in_input_order(proxy, fake: FakeWorkers) -> None:
    fake.models[BGE] = embedder(delay_for_first_batch=0.05)
    texts = [f"t-{i}" for i in range(250)]
    async with proxy() as client:
        response = await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    validate(body, "CreateEmbeddingResponse")
    assert [item["index"] for item in body["data"]] == list(range(250))
    assert [item["embedding"][0] for item in body["data"]] == [float(i) for i in range(250)]
    assert sorted(len(call[1]["text"]) for call in fake.calls) == [50, 100, 100]
    assert body["model"] == BGE and body["usage"]["prompt_tokens"] > 0


async def test_openai_sdk_default_base64_equals_float(sdk, fake: FakeWorkers) -> None:
    fake.models[BGE] = embedder()
    client, (http, lifespan) = await sdk()
    try:
        default = await client.embeddings.create(model="text-embedding-3-small", input=["a-1", "b-22"])
        floats = await client.embeddings.create(model=BGE, input=["a-1", "b-22"], encoding_format="float")
        single = await client.embeddings.create(model=BGE, input="c-3")
    finally:
        await http.aclose()
        await lifespan.__aexit__(None, None, None)
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data] == [
        [1.0, 0.5, 0.25], [22.0, 11.0, 0.25]]
    assert single.data[0].embedding == [3.0, 1.5, 0.25]
    assert default.usage.total_tokens == default.usage.prompt_tokens


async def test_base64_on_the_wire(proxy, fake: FakeWorkers) -> None:
    fake.models[BGE] = embedder()
    async with proxy() as client:
        body = (await client.post("/v1/embeddings", json={"model": BGE, "input": "x-2",
                                                          "encoding_format": "base64"})).json()
    from cfai_cli.core.translate.embeddings import decode_base64

    assert isinstance(body["data"][0]["embedding"], str)
    assert decode_base64(body["data"][0]["embedding"]) == [2.0, 1.0, 0.25]
    # The spec only models float arrays; with the vector decoded, the rest of the object must match it.
    body["data"][0]["embedding"] = decode_base64(body["data"][0]["embedding"])
    validate(body, "CreateEmbeddingResponse")


@pytest.mark.parametrize(("payload", "param"), [
    ({"input": ""}, "input"),
    ({"input": ["fine", ""]}, "input[1]"),
    ({"input": []}, "input"),
    ({"input": [[1, 2, 3]]}, "input"),
    ({"input": "x", "dimensions": 769}, "dimensions"),  # more than bge-base's 768
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({}, "input"),
])
async def test_bad_requests_are_400_with_param(proxy, fake: FakeWorkers, payload: dict[str, Any], param: str) -> None:
    fake.models[BGE] = embedder()
    async with proxy() as client:
        response = await client.post("/v1/embeddings", json={"model": BGE, **payload})
    assert response.status_code == 400, response.text
    validate(response.json(), "ErrorResponse")
    assert response.json()["error"]["param"] == param
    assert fake.calls == []


async def test_upstream_length_error_names_the_likely_input(proxy, fake: FakeWorkers) -> None:
    def too_long(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if any(len(t) > 100 for t in body["text"]):
            return httpx.Response(400, json=error_envelope(3030, "AiError: AiError: Sequence too long: 900 > 512"))
        return httpx.Response(200, json=envelope({"data": [[1.0] for _ in body["text"]]}))

    fake.models[BGE] = too_long
    texts = ["short"] * 150 + ["long " * 60] + ["short"] * 10
    async with proxy() as client:
        response = await client.post("/v1/embeddings", json={"model": BGE, "input": texts})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "input[150]" and error["code"] == "context_length_exceeded"
    assert "3030" in error["message"]


async def test_bge_m3_falls_back_to_contexts_mode(proxy, fake: FakeWorkers) -> None:
    def m3(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if "text" in body:
            return httpx.Response(400, json=error_envelope(5006, "AiError: Bad input: required 'contexts'"))
        return httpx.Response(200, json=envelope({"response": [[0.5, 0.5] for _ in body["contexts"]],
                                                  "shape": [len(body["contexts"]), 2]}))

    fake.models["@cf/baai/bge-m3"] = m3
    async with proxy() as client:
        body = (await client.post("/v1/embeddings", json={"model": "@cf/baai/bge-m3", "input": ["a", "b"]})).json()
    validate(body, "CreateEmbeddingResponse")
    assert [d["embedding"] for d in body["data"]] == [[0.5, 0.5], [0.5, 0.5]]


async def test_offline_embeddings_with_dimensions_and_aliases(settings, api_key: str) -> None:
    app = create_app(settings.as_offline())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy.test",
        headers={"Authorization": f"Bearer {api_key}"}) as client:
        for alias, dims in (("text-embedding-3-small", 768), ("text-embedding-3-large", 1024),
                            ("text-embedding-ada-002", 768), ("@cf/baai/bge-small-en-v1.5", 384)):
            body = (await client.post("/v1/embeddings", json={"model": alias, "input": ["a cat", "a dog"]})).json()
            validate(body, "CreateEmbeddingResponse")
            assert [len(d["embedding"]) for d in body["data"]] == [dims, dims]
        short = (await client.post("/embeddings", json={
            "model": "@cf/google/embeddinggemma-300m", "input": "a cat", "dimensions": 128})).json()
        vector = short["data"][0]["embedding"]
        assert len(vector) == 128 and sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-6)
        qwen = await client.post("/embeddings", json={"model": "@cf/qwen/qwen3-embedding-0.6b",
                                                      "input": [f"text {i}" for i in range(70)]})
        assert qwen.status_code == 200 and len(qwen.json()["data"]) == 70
        assert json.loads(qwen.text)["data"][69]["index"] == 69


def raw_vectors(texts: list[str]) -> httpx.Response:
    """Vectors as Workers AI might write them: `f-…` texts get a float with an exponent, `i-…` texts an integer and
    `z-…` texts the same with an exponent of three digits (which goes the old way: orjson judges it)."""
    kinds = {"f": b"[1.5E-7,-0.25]", "i": b"[1,-0.25]", "z": b"[1.5E-100,0]"}
    data = b",".join(kinds[t[0]] for t in texts)
    return httpx.Response(200, headers={"content-type": "application/json"},
                          content=b'{"result":{"shape":[%d,2],"data":[%s],"pooling":"mean"},"success":true,'
                                  b'"errors":[],"messages":[]}' % (len(texts), data))


async def test_float_vectors_leave_as_workers_ai_wrote_them(proxy, fake: FakeWorkers) -> None:
    # Checked vectors' text is written as it came (no decode and encode of every number), integers and exponents
    # included (any JSON number, as Workers AI's schema says); a batch the check leaves to orjson (a three-digit
    # exponent) is decoded whole as before, so its numbers leave as floats (0.0, not 0).
    fake.models[BGE] = lambda request, body: raw_vectors(body["text"])
    async with proxy() as client:
        floats = await client.post("/v1/embeddings", json={"model": BGE, "input": ["f-1", "f-2"]})
        mixed = await client.post("/v1/embeddings", json={"model": BGE, "input": ["f-1", "i-2"]})
        tiny = await client.post("/v1/embeddings", json={"model": BGE, "input": ["z-1", "i-2"]})
        short = await client.post("/v1/embeddings", json={"model": BGE, "input": ["f-1"], "dimensions": 1})
    for response in (floats, mixed, tiny, short):
        assert response.status_code == 200, response.text
        validate(response.json(), "CreateEmbeddingResponse")
    assert floats.text.count('"embedding":[1.5E-7,-0.25]}') == 2
    assert '"embedding":[1,-0.25]}' in mixed.text and '"embedding":[1.5E-7,-0.25]}' in mixed.text
    assert '"embedding":[1.5e-100,0.0]}' in tiny.text and '"embedding":[1.0,-0.25]}' in tiny.text
    assert [d["embedding"] for d in floats.json()["data"]] == [[1.5e-7, -0.25]] * 2
    assert [d["embedding"] for d in mixed.json()["data"]] == [[1.5e-7, -0.25], [1.0, -0.25]]
    assert short.json()["data"][0]["embedding"] == [1.0]  # `dimensions` needs the floats: re-normalised


async def test_an_upstream_answer_nested_too_deeply_is_a_502_not_a_crash(proxy, fake: FakeWorkers) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # past orjson's depth and Python's recursion limit
    fake.models[BGE] = lambda request, body: httpx.Response(
        200, headers={"content-type": "application/json"}, content=b'{"result":{"data":' + deep + b"}}")
    async with proxy() as client:
        for encoding in ("float", "base64"):
            response = await client.post("/v1/embeddings", json={"model": BGE, "input": ["a"],
                                                                 "encoding_format": encoding})
            assert response.status_code == 502, response.text
            validate(response.json(), "ErrorResponse")
            assert "not JSON" in response.json()["error"]["message"]


def test_only_an_answer_whose_strings_cannot_hold_an_error_is_vouched_for() -> None:
    # Observe masks secrets in any body holding `"error"`; a route spares it the scan of a big answer only when
    # none of the answer's strings can hold it: a quote in JSON text opens or closes a string, or is escaped in it.
    from starlette.requests import Request

    from cfai_cli.server.responses import ERROR_FREE, vouch_error_free

    def vouched(*strings: str) -> bool:
        request = Request({"type": "http", "state": {}})
        vouch_error_free(request, strings)
        return bool(request.scope["state"].get(ERROR_FREE))

    assert vouched("@cf/baai/bge-base-en-v1.5", "1024x1024", "jpeg", "errors", "an error")
    assert not vouched("@cf/x", "error") and not vouched('x"error')
    assert vouched('"error"')  # written \"error\": nothing in the document reads "error"
    assert vouched()


@pytest.mark.parametrize("count", [0, 1, 99, 100, 101, 250])
async def test_a_long_list_is_sent_in_pieces_with_the_same_bytes(count: int) -> None:
    from cfai_cli.core import jsonfast
    from cfai_cli.core.jsonfast import RawJson
    from cfai_cli.server.responses import PiecewiseJSONResponse

    # Each vector's text as a view of the answer it came in (core.workers.vector_cut), half of them as bytes.
    source = b"".join(b"[%d.5]" % i for i in range(count))
    vectors, start = [], 0
    for i in range(count):
        end = source.index(b"]", start) + 1
        vectors.append(RawJson(memoryview(source)[start:end] if i % 2 else source[start:end]))
        start = end
    answer = {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": vectors[i]}
                                         for i in range(count)], "model": 'm"data":[]', "usage": {"n": count}}
    expected = jsonfast.dumps(answer)
    response = PiecewiseJSONResponse(answer, "data", headers={"X-Test": "1"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await response({"type": "http"}, None, send)  # type: ignore[arg-type]
    headers = dict(sent[0]["headers"])
    assert headers[b"content-length"] == str(len(expected)).encode() and headers[b"x-test"] == b"1"
    assert headers[b"content-type"] == b"application/json"
    assert b"".join(m["body"] for m in sent[1:]) == expected
    assert [m["more_body"] for m in sent[1:]] == [True] * (len(sent) - 2) + [False]
    assert len(sent) == 1 + 2 + (count + 99) // 100  # the frame's two ends and a piece per 100 items


@pytest.mark.parametrize("as_bytes", [False, True])
async def test_pieces_of_text_already_written_are_rendered_as_they_are_sent(as_bytes: bool) -> None:
    from cfai_cli.core import jsonfast
    from cfai_cli.core.jsonfast import AsciiText
    from cfai_cli.server.responses import PiecewiseJSONResponse

    images = ["QUJD" * 1000, "REVG" * 10, "R0g="]
    # As bytes: views of an upstream answer (service.images' b64_text), sent as they are, never copied.
    source = ("xx" + "".join(images)).encode()
    views, start = [], 2
    for text in images:
        views.append(memoryview(source)[start:start + len(text)])
        start += len(text)
    texts: list[Any] = views if as_bytes else images
    answer = {"created": 1, "data": [{"b64_json": AsciiText(text)} for text in texts], "output_format": "png"}
    expected = jsonfast.dumps({**answer, "data": [{"b64_json": text} for text in images]})
    rendered: list[int] = []
    real = jsonfast.pieces

    def counted(value: Any, **how: Any) -> list[bytes | memoryview]:
        rendered.append(1)
        return real(value, **how)

    response = PiecewiseJSONResponse(answer, "data", step=1)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    jsonfast_pieces, jsonfast.pieces = jsonfast.pieces, counted
    try:
        await response({"type": "http"}, None, send)  # type: ignore[arg-type]
    finally:
        jsonfast.pieces = jsonfast_pieces
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(expected)).encode()
    bodies = [m["body"] for m in sent[1:]]
    assert b"".join(bodies) == expected and [m["more_body"] for m in sent[1:]] == [True] * (len(bodies) - 1) + [False]
    assert len(rendered) == len(images)  # each image rendered once, as it was sent
    if as_bytes:  # the frame's start, the first image's opening, then each image's text (the very view) and its
        # closing, joined with what follows (the next image's opening, or the frame's end): one write fewer an image
        assert len(bodies) == 2 + 2 * len(images)
        assert [body is view for body, view in zip(bodies[2::2], views, strict=False)] == [True] * len(images)
        assert bodies[3] == b'"},{"b64_json":"' and bodies[-1].startswith(b'"}],')
    else:
        assert len(bodies) == 2 + len(images)

    # Text that JSON would escape, passed off as ASCII text: the answer ends in an error, never other bytes.
    lying = PiecewiseJSONResponse({"data": [{"b64_json": AsciiText('a"b')}]}, "data", step=1)
    sent.clear()
    with pytest.raises(RuntimeError, match="measured"):
        await lying({"type": "http"}, None, send)  # type: ignore[arg-type]
    assert [m.get("more_body") for m in sent[1:]] == [True]  # only the frame's start went out
