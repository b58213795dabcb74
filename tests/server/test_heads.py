"""A JSON answer's head: the headers Starlette's JSONResponse renders for it, whether cfai encodes them per answer or
once (server.responses: the usual API headers), followed by what the middleware adds."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import JSONResponse

from cfai_cli.server.responses import API_HEADERS
from cfai_cli.settings import Settings
from tests.fake_workers import FakeWorkers, native_text
from tests.server.test_stream_writes import MODEL, asgi_messages

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("model", "tools", "status"), [
    (MODEL, False, 200),  # the usual headers
    (MODEL, True, 200),  # a hosted tool left out: a header of the route's own
    ("@cf/nobody/no-such-model", False, 404),  # an error answer: the usual headers too
])
async def test_a_json_answers_head_has_the_headers_starlette_renders_for_it(
        settings: Settings, api_key: str, fake: FakeWorkers, model: str, tools: bool, status: int) -> None:
    fake.models[MODEL] = native_text("Hello there.")
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    own = dict(API_HEADERS)
    if tools:
        body["tools"] = [{"type": "web_search"}]
        own["x-cfai-dropped-tools"] = "web_search"
    sent = await asgi_messages(settings, api_key, fake, body)
    start, answer = sent[0], b"".join(m["body"] for m in sent if m["type"] == "http.response.body")
    assert start["status"] == status
    expected = JSONResponse(None, status_code=status, headers=own).raw_headers
    expected = [(name, str(len(answer)).encode() if name == b"content-length" else value) for name, value in expected]
    assert start["headers"][:len(expected)] == expected


@pytest.mark.parametrize("status", [200, 204, 304, 404, 500])
@pytest.mark.parametrize("headers", [API_HEADERS, {**API_HEADERS}, {**API_HEADERS, "Retry-After": "1"}, None])
def test_cfais_json_response_renders_starlettes_headers(status: int, headers: dict[str, str] | None) -> None:
    from cfai_cli.server.responses import JSONResponse as Ours

    content = {"id": "x", "answer": "é"}
    assert Ours(content, status_code=status, headers=headers).raw_headers == JSONResponse(
        content, status_code=status, headers=headers).raw_headers
