"""The conformance gate: every proxy endpoint through the real openai SDK with strict response validation,
and every raw body and SSE event the proxy sent validated against the official OpenAI schemas.

The proxy runs `--offline` (the built-in emulator upstream). A recording ASGI wrapper keeps each raw answer,
so what is checked is exactly the bytes on the wire, not the SDK's parsed objects. Needs no ../shared: the
schemas come from tests/schemas/openai-subset.json.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from cfai_cli.emulator.images import png
from cfai_cli.server.app import create_app
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.keys import SCOPES, KeyPolicy, KeyStore
from tests.audio_fixtures import tone_wav
from tests.openai_schema import validate, validate_sse_chat_stream, validate_sse_responses_stream
from tests.sdk import sdk_httpx

pytestmark = pytest.mark.anyio


TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                         "parameters": {"type": "object", "required": ["city"],
                                                        "properties": {"city": {"type": "string"}}}}}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    status: int = 0
    content_type: str = ""
    body: bytearray = field(default_factory=bytearray)


class Recorder:
    """ASGI wrapper that keeps every answer the app sends, byte for byte."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope["method"], scope["path"], scope.get("query_string", b"").decode())
        self.exchanges.append(exchange)

        async def recording(message: Any) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.content_type = dict(message.get("headers", [])).get(b"content-type", b"").decode()
            elif message["type"] == "http.response.body":
                exchange.body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, recording)


def check(exchange: Exchange) -> str:
    """Validate one raw answer against the schema its route and content type call for; returns what was checked."""
    body, kind, path = bytes(exchange.body), exchange.content_type, exchange.path.removeprefix("/v1")
    if exchange.status >= 400:
        validate(json.loads(body), "ErrorResponse")
        return "ErrorResponse"
    if kind.startswith("text/event-stream"):
        if path == "/chat/completions":
            validate_sse_chat_stream(body)
            return "chat stream"
        if path == "/responses":
            validate_sse_responses_stream(body)
            return "responses stream"
        if path == "/completions":
            chunks = [json.loads(line[6:]) for line in body.decode().split("\n")
                      if line.startswith("data: {")]
            assert body.rstrip().endswith(b"data: [DONE]") and chunks
            for chunk in chunks:  # the spec types finish_reason as non-null; streams send null until the end
                if chunk["choices"] and chunk["choices"][0]["finish_reason"] is None:
                    chunk["choices"][0]["finish_reason"] = "stop"
                validate(chunk, "CreateCompletionResponse")
            return "completions stream"
        raise AssertionError(f"unexpected stream from {path}")
    if path.startswith("/audio/speech"):
        assert kind.startswith("audio/") and body
        return "audio bytes"
    if not kind.startswith("application/json"):
        assert kind.startswith(("text/plain", "text/vtt")) and path.startswith("/audio/"), (path, kind)
        return "text"
    data = json.loads(body)
    if path == "/embeddings":
        for item in data["data"]:
            if isinstance(item["embedding"], str):  # base64: the spec models only float arrays
                raw = base64.b64decode(item["embedding"])
                item["embedding"] = list(memoryview(raw).cast("f"))
    schema = {
        "/chat/completions": "CreateChatCompletionResponse", "/responses": "Response",
        "/completions": "CreateCompletionResponse", "/embeddings": "CreateEmbeddingResponse",
        "/images/generations": "ImagesResponse", "/images/edits": "ImagesResponse", "/models": "ListModelsResponse",
        "/audio/translations": "CreateTranslationResponseJson",
    }.get(path)
    if path == "/audio/transcriptions":
        schema = "CreateTranscriptionResponseVerboseJson" if "segments" in data else "CreateTranscriptionResponseJson"
    elif path.startswith("/models/"):
        schema = "Model"
    elif path.startswith("/responses/") and exchange.method == "GET" and not path.endswith("/input_items"):
        schema = "Response"
    elif path.startswith("/responses/"):
        schema = "ResponseItemList" if path.endswith("/input_items") else None
        if schema is None:
            assert data["deleted"] is True and data["object"] == "response"
            return "deleted"
    assert schema is not None, f"no schema for {exchange.method} {path}"
    validate(data, schema)
    return schema


@asynccontextmanager
async def sdk(settings: Settings) -> AsyncIterator[tuple[openai.AsyncOpenAI, openai.AsyncOpenAI, Recorder]]:
    key, _ = KeyStore(settings.database).create("conformance", KeyPolicy(scopes=frozenset(SCOPES)))
    app = create_app(settings.as_offline())
    recorder = Recorder(app)
    async with app.router.lifespan_context(app), sdk_httpx.AsyncClient(
            transport=sdk_httpx.ASGITransport(app=recorder), base_url="http://proxy.test/v1") as http:
        common: dict[str, Any] = {"api_key": key, "base_url": "http://proxy.test/v1", "http_client": http,
                                  "max_retries": 0}
        yield (openai.AsyncOpenAI(**common, _strict_response_validation=True), openai.AsyncOpenAI(**common),
               recorder)


async def test_every_endpoint_conforms(cfai_home: Any) -> None:
    settings = load_settings()
    async with sdk(settings) as (strict, lenient, recorder):
        messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
        for model in ("gpt-4o-mini", "@cf/zai-org/glm-4.7-flash", "gpt-5"):
            await strict.chat.completions.create(model=model, messages=messages, max_tokens=1024)
            stream = await strict.chat.completions.create(model=model, messages=messages, stream=True,
                                                          stream_options={"include_usage": True})
            _ = [chunk async for chunk in stream]
            async with strict.chat.completions.stream(model=model, messages=messages, tools=[TOOL]) as helper:
                await helper.get_final_completion()
        await strict.chat.completions.create(model="gpt-4o-mini", messages=messages, n=2, stop=["canned"])

        first = await strict.responses.create(model="gpt-4o-mini", input="hello", tools=[{
            "type": "function", "name": "get_weather", "parameters": TOOL["function"]["parameters"]}])
        async with strict.responses.stream(model="@cf/zai-org/glm-4.7-flash", input="hi",
                                           previous_response_id=first.id) as events:
            await events.get_final_response()
        await strict.responses.retrieve(first.id)
        await strict.responses.input_items.list(first.id)
        await strict.responses.delete(first.id)

        await strict.completions.create(model="gpt-4o-mini", prompt=["Say", "Tell"], max_tokens=8, echo=True)
        _ = [c async for c in await lenient.completions.create(model="gpt-4o-mini", prompt="Say", stream=True)]

        await strict.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
        await lenient.embeddings.create(model="text-embedding-3-small", input="base64 by default")

        await strict.images.generate(prompt="a fox", n=2)
        await strict.images.generate(prompt="a fox", response_format="url",
                                     model="@cf/stabilityai/stable-diffusion-xl-base-1.0", size="512x512")
        await strict.images.edit(image=("in.png", io.BytesIO(png(256, 256, b"src")), "image/png"), prompt="night")

        wav = tone_wav(2.0)
        for fmt in ("json", "verbose_json", "text", "srt", "vtt"):
            await strict.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav, "audio/wav"),
                                                     response_format=fmt)  # type: ignore[call-overload]
        await strict.audio.translations.create(model="whisper-1", file=("a.wav", wav, "audio/wav"))
        speech = await strict.audio.speech.create(model="tts-1", voice="alloy", input="hello")
        assert speech.content

        await strict.models.list()
        await strict.models.retrieve("gpt-4o-mini")

        for bad in ({"model": "nope"}, {"model": "gpt-4o-mini", "messages": [{"role": "robot"}]}):
            with pytest.raises(openai.APIStatusError):
                await strict.chat.completions.create(messages=bad.get("messages", messages), model=bad["model"])
        with pytest.raises(openai.NotFoundError):
            await strict.responses.retrieve("resp_does_not_exist")

    checked = [(e.method, e.path, check(e)) for e in recorder.exchanges]
    served = {path.removeprefix("/v1").split("/resp_")[0] for _, path, _ in checked}
    assert served >= {"/chat/completions", "/responses", "/completions", "/embeddings", "/images/generations",
                      "/images/edits", "/audio/transcriptions", "/audio/translations", "/audio/speech", "/models"}
    kinds = {what for _, _, what in checked}
    assert {"chat stream", "responses stream", "completions stream", "ErrorResponse", "Response",
            "CreateTranscriptionResponseVerboseJson", "text"} <= kinds
    assert len(checked) == 34  # every SDK call above, each answered once and checked


async def test_openapi_document_describes_what_is_served(cfai_home: Any) -> None:
    import httpx
    import jsonschema

    app = create_app(load_settings().as_offline())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as client:
        response = await client.get("/openapi.json")  # open: API tools read it before they have a key
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/images/generations",
            "/v1/audio/transcriptions", "/v1/models"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    chat = schemas["ChatCompletionRequest"]
    assert {"model", "messages"} <= set(chat["required"])
    # The request schema is the one the route validates with: a valid body passes it, a broken one does not.
    resolver = {"$defs": schemas, **chat}
    text = json.dumps(resolver).replace("#/components/schemas/", "#/$defs/")
    validator = jsonschema.Draft202012Validator(json.loads(text))
    assert validator.is_valid({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert not validator.is_valid({"model": "gpt-4o-mini", "messages": [{"role": "robot"}]})
