"""The emulator's ASGI app: routes `/accounts/{id}/ai/run/{model}`, `/ai/models/search` and `/user/tokens/verify`
under any prefix.

Imports only the standard library, starlette and the emulator's own modules. Checks run in a fixed order —
route (7003), auth (10000), JSON body (5006), model (5007), the model's schema — so each failure is reproducible.
`?queueRequest=true` (and a poll's `{"request_id"}` without it) goes to emulator.queue, Workers AI's async batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfai_cli.emulator import audio, chat, embeddings, faults, guard, images, native, queue, rerank, responses
from cfai_cli.emulator.billing import bill
from cfai_cli.emulator.catalogue import TASK_OF, TEXT_MODELS, search
from cfai_cli.emulator.prefix import PrefixCache
from cfai_cli.emulator.wire import EmulatorError, bad_input, digest, envelope, error_response, json_response

_RUN = re.compile(r"^.*?/accounts/(?P<account>[^/]+)/ai/run/(?P<model>.+)$")
_SEARCH = re.compile(r"^.*?/accounts/(?P<account>[^/]+)/ai/models/search/?$")
_VERIFY = re.compile(r"^.*?/user/tokens/verify/?$")
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _check_auth(request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise EmulatorError(401, 10000, "Authentication error", ai_error=False)


def _check_method(request: Request, method: str) -> None:
    if request.method != method:
        raise EmulatorError(405, 7001, f"Method {request.method} not allowed for this route (use {method})",
                            ai_error=False)


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_input("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_input("must be object at '/'")
    return body


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def run_model(model: str, body: Mapping[str, Any], seed: bytes, *, affinity: str | None = None,
              prefix: PrefixCache | None = None) -> Response:
    """One /ai/run call, once the body is known to be a JSON object. Text models report the prompt tokens
    `prefix` holds for the request's `affinity` id as cached (emulator.prefix)."""
    if model.startswith(faults.PREFIX):
        return faults.run(model[len(faults.PREFIX) :], body, seed)
    if model in embeddings.MODELS:
        return embeddings.run(model, body)
    if model in guard.MODELS:
        return guard.run(model, body)
    if model in rerank.MODELS:
        return rerank.run(model, body)
    if model in audio.MODELS:
        return audio.run(model, body)
    if model in images.MODELS and model not in images.MULTIPART_MODELS:
        return images.run(model, body)
    spec = TEXT_MODELS.get(model)
    if spec is None:
        if model in TASK_OF:
            raise bad_input(f"cfai's offline emulator does not emulate {TASK_OF[model]} models yet ({model})")
        raise EmulatorError(400, 5007, f"AiError: No such model: No such model {model} or task")
    cached = prefix.cached_tokens(affinity, body) if prefix is not None else 0
    if spec.dialect == "native":
        return bill(model, native.run(model, spec, body, seed, cached=cached))
    if spec.responses_api and "input" in body:
        return bill(model, responses.run(model, spec, body, seed, cached=cached))
    return bill(model, chat.run(model, spec, body, seed, cached=cached))


async def _dispatch(request: Request) -> Response:
    path: str = request.scope["path"]
    seed = digest(request.method, path)
    try:
        if _SEARCH.match(path):
            _check_method(request, "GET")
            _check_auth(request)
            return json_response(search(dict(request.query_params)))
        if _VERIFY.match(path):  # Cloudflare's token check (`cfai doctor`): any bearer token is a good one here
            _check_method(request, "GET")
            _check_auth(request)
            return json_response(envelope({"id": digest(request.headers["authorization"]).hex()[:32],
                                           "status": "active"}) | {"messages": [
                {"code": 10000, "message": "This API Token is valid and active", "type": None}]})
        match = _RUN.match(path)
        if match is None:
            raise EmulatorError(404, 7003, "No route for the URI", ai_error=False)
        _check_method(request, "POST")
        _check_auth(request)
        raw = await request.body()
        seed = digest(path, raw)
        if request.query_params.get("queueRequest", "").lower() == "true":
            return queue.handle(match["model"], raw, _json_object(raw), run_model)
        if match["model"] in images.MULTIPART_MODELS:
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                raise bad_input("this model takes multipart/form-data")
            async with request.form() as form:  # closes the spooled uploads
                return images.run_multipart(match["model"], form)
        if audio.takes_raw_body(match["model"], request.headers.get("content-type", ""), raw):
            return audio.run_raw(match["model"], raw, dict(request.query_params))
        body = _parse_body(raw)
        if queue.is_poll(body) and match["model"] in queue.QUEUE_MODELS:  # the docs poll with and without the flag
            return queue.poll(match["model"], body)
        return run_model(match["model"], body, seed, affinity=request.headers.get("x-session-affinity"),
                         prefix=request.app.state.prefix)
    except EmulatorError as error:
        return error_response(error, seed)


def create_emulator_app() -> Starlette:
    """A fresh emulator app. Its one piece of state is the prefix cache behind `x-session-affinity`
    (emulator.prefix), so one instance may serve any number of clients."""
    app = Starlette(routes=[Route("/{path:path}", _dispatch, methods=_METHODS)])
    app.state.prefix = PrefixCache()
    return app
