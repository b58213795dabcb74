"""The emulator's ASGI app: routes `/accounts/{id}/ai/run/{model}`, `/ai/models/search` and `/user/tokens/verify`
under any prefix.

Imports only the standard library and the emulator's own modules (its HTTP surface is emulator.asgi). Checks run
in a fixed order — route (7003), auth (10000), JSON body (5006), model (5007), the model's schema — so each
failure is reproducible. `?queueRequest=true` (and a poll's `{"request_id"}` without it) goes to emulator.queue,
Workers AI's async batch. A text model's call imports only the modules that answer it (its dialect's, and the
queue's for a poll): `cfai chat --offline` pays for one answer, not for every task the emulator knows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import partial
from typing import Any

from cfai_cli.emulator import faults
from cfai_cli.emulator.asgi import App, Request, Response
from cfai_cli.emulator.catalogue import TASK_OF, TEXT_MODELS
from cfai_cli.emulator.prefix import PrefixCache
from cfai_cli.emulator.wire import EmulatorError, bad_input, digest, envelope, error_response, json_response

_RUN = re.compile(r"^.*?/accounts/(?P<account>[^/]+)/ai/run/(?P<model>.+)$")
_SEARCH = re.compile(r"^.*?/accounts/(?P<account>[^/]+)/ai/models/search/?$")
_VERIFY = re.compile(r"^.*?/user/tokens/verify/?$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


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
    spec = TEXT_MODELS.get(model)  # no other task claims a text model (tests/emulator/test_emulator_asgi.py)
    if spec is not None:
        from cfai_cli.emulator.billing import bill

        cached = prefix.cached_tokens(affinity, body) if prefix is not None else 0
        if spec.dialect == "native":
            from cfai_cli.emulator import native

            return bill(model, native.run(model, spec, body, seed, cached=cached))
        if spec.responses_api and "input" in body:
            from cfai_cli.emulator import responses

            return bill(model, responses.run(model, spec, body, seed, cached=cached))
        from cfai_cli.emulator import chat

        return bill(model, chat.run(model, spec, body, seed, cached=cached))
    from cfai_cli.emulator import audio, embeddings, guard, images, rerank

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
    if model in TASK_OF:
        raise bad_input(f"cfai's offline emulator does not emulate {TASK_OF[model]} models yet ({model})")
    raise EmulatorError(400, 5007, f"AiError: No such model: No such model {model} or task")


async def _dispatch(request: Request, *, prefix: PrefixCache) -> Response:
    path = request.path
    seed = digest(request.method, path)
    try:
        if request.method not in _METHODS:  # what the catch-all route answered as a Starlette app
            return Response("Method Not Allowed", 405, {"allow": ", ".join(sorted(_METHODS))}, "text/plain")
        if _SEARCH.match(path):
            from cfai_cli.emulator.catalogue import search

            _check_method(request, "GET")
            _check_auth(request)
            return json_response(search(request.query_params))
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
        raw = request.body
        seed = digest(path, raw)
        model = match["model"]
        if request.query_params.get("queueRequest", "").lower() == "true":
            from cfai_cli.emulator import queue

            return queue.handle(model, raw, _json_object(raw), run_model)
        content_type = request.headers.get("content-type", "")
        if model not in TEXT_MODELS:  # flux-2's multipart form and the raw audio bodies are no text model's
            from cfai_cli.emulator import audio, images

            if model in images.MULTIPART_MODELS:
                if not content_type.startswith("multipart/form-data"):
                    raise bad_input("this model takes multipart/form-data")
                async with request.form() as form:  # closes the spooled uploads
                    return images.run_multipart(model, form)
            if audio.takes_raw_body(model, content_type, raw):
                return audio.run_raw(model, raw, request.query_params)
        body = _parse_body(raw)
        if "request_id" in body:  # perhaps a poll (the docs poll with and without the flag)
            from cfai_cli.emulator import queue

            if queue.is_poll(body) and model in queue.QUEUE_MODELS:
                return queue.poll(model, body)
        return run_model(model, body, seed, affinity=request.headers.get("x-session-affinity"), prefix=prefix)
    except EmulatorError as error:
        return error_response(error, seed)


def create_emulator_app() -> App:
    """A fresh emulator app (ASGI). Its one piece of state is the prefix cache behind `x-session-affinity`
    (emulator.prefix), so one instance may serve any number of clients."""
    return App(partial(_dispatch, prefix=PrefixCache()))
