"""The proxy's routes, one module per endpoint family (OpenAI's, Anthropic's Messages); `routes()` lists them.

The table below names each route's module and endpoint instead of importing them: the endpoint modules and
the services and models they bring are ~100 modules and 100-130 ms of CPU (issue 25, time to ready measured
2026-12-01), which `cfai serve` need not spend before its first 200 on /health. Each endpoint module is
imported by the first request of its family, or before that by `warm()`, which `create_app`'s lifespan runs in
a thread once the server is up; `warm()` also checks each module's own `ROUTES` against this table (a test
does too), so a route added to a module and not here fails loudly rather than 404s quietly.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cfai_cli.server.routes import health

FILES_PREFIX = "/images/files/"  # image answers' URL files (routes/images.py); open without a key by default

# (module, endpoint, path, methods), in the order the router tries them; each module's ROUTES, as it lists them.
TABLE: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("chat", "chat_completions", "/chat/completions", ("POST",)),
    ("models", "list_models", "/models", ("GET",)),
    ("models", "retrieve_model", "/models/{model:path}", ("GET",)),
    ("models", "route_check", "/route-check", ("GET",)),
    ("embeddings", "embeddings", "/embeddings", ("POST",)),
    ("images", "generations", "/images/generations", ("POST",)),
    ("images", "edits", "/images/edits", ("POST",)),
    ("images", "files", FILES_PREFIX + "{name}", ("GET",)),
    ("responses", "create", "/responses", ("POST",)),
    ("responses", "retrieve", "/responses/{response_id}", ("GET",)),
    ("responses", "delete", "/responses/{response_id}", ("DELETE",)),
    ("responses", "input_items", "/responses/{response_id}/input_items", ("GET",)),
    ("messages", "create", "/messages", ("POST",)),
    ("messages", "count_tokens", "/messages/count_tokens", ("POST",)),
    ("completions", "completions", "/completions", ("POST",)),
    ("audio", "transcriptions", "/audio/transcriptions", ("POST",)),
    ("audio", "translations", "/audio/translations", ("POST",)),
    ("audio", "speech", "/audio/speech", ("POST",)),
    ("tokenize", "tokenize", "/tokenize", ("POST",)),
    ("moderations", "moderations", "/moderations", ("POST",)),
    ("openapi", "openapi", "/openapi.json", ("GET",)),
    ("rerank", "rerank_v1", "/rerank", ("POST",)),
    ("admin", "create_key", "/admin/keys", ("POST",)),
    ("admin", "list_keys", "/admin/keys", ("GET",)),
    ("admin", "show_key", "/admin/keys/{key_id}", ("GET",)),
    ("admin", "update_key", "/admin/keys/{key_id}", ("PATCH",)),
    ("admin", "revoke_key", "/admin/keys/{key_id}", ("DELETE",)),
    ("admin", "rotate_key", "/admin/keys/{key_id}/rotate", ("POST",)),
    ("admin", "usage", "/admin/usage", ("GET",)),
    ("admin", "usage_series", "/admin/usage/series", ("GET",)),
    ("files", "create", "/files", ("POST",)),
    ("files", "listing", "/files", ("GET",)),
    ("files", "retrieve", "/files/{file_id}", ("GET",)),
    ("files", "delete", "/files/{file_id}", ("DELETE",)),
    ("files", "content", "/files/{file_id}/content", ("GET",)),
    ("batches", "create", "/batches", ("POST",)),
    ("batches", "listing", "/batches", ("GET",)),
    ("batches", "retrieve", "/batches/{batch_id}", ("GET",)),
    ("batches", "cancel", "/batches/{batch_id}/cancel", ("POST",)),
)
# Served under their own prefix only (Cohere v2), not under /v1 and unversioned like the rest.
UNPREFIXED: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("rerank", "rerank_v2", "/v2/rerank", ("POST",)),
)

Endpoint = Callable[[Request], Any]


def _module_name(module: str) -> str:
    return f"{__name__}.{module}"


def _lazy(module: str, name: str) -> Endpoint:
    """An endpoint that imports `module` on its first call and then hands every request to `module.name`."""
    found: list[Endpoint] = []

    async def endpoint(request: Request) -> Response:
        if not found:
            found.append(vars(importlib.import_module(_module_name(module)))[name])
        response: Response = await found[0](request)
        return response

    endpoint.__name__ = endpoint.__qualname__ = name
    return endpoint


def _check_findable(modules: Iterable[str]) -> None:
    """At start-up, without importing them: every module the table names exists (a typo is not a late 404)."""
    for module in sorted(set(modules)):
        if importlib.util.find_spec(_module_name(module)) is None:
            raise RuntimeError(f"route module {_module_name(module)} is missing")


def routes() -> list[Route]:
    """Every route twice: under /v1 (what SDKs call) and unversioned (what some tools call); Cohere's
    /v2/rerank once, as it is."""
    _check_findable(m for m, _, _, _ in (*TABLE, *UNPREFIXED))
    out = [Route("/health", health.health, methods=["GET"])]
    for module, name, path, methods in TABLE:
        endpoint = _lazy(module, name)
        out.append(Route("/v1" + path, endpoint, methods=list(methods)))
        out.append(Route(path, endpoint, methods=list(methods)))
    out += [Route(path, _lazy(module, name), methods=list(methods)) for module, name, path, methods in UNPREFIXED]
    return out


def warm() -> None:
    """Import every endpoint module now and check its ROUTES (and V2_ROUTES) against the table: the path,
    methods and endpoint of each, in order, and of every module of this package that has ROUTES. Raises
    RuntimeError naming the first difference."""
    import pkgutil  # here: warm() runs after the first /health answer

    modules = [info.name for info in pkgutil.iter_modules(__path__)]
    for table, attribute in ((TABLE, "ROUTES"), (UNPREFIXED, "V2_ROUTES")):
        listed: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
        for module, name, path, methods in table:
            listed.setdefault(module, []).append((name, path, methods))
        for module in modules:
            loaded = importlib.import_module(_module_name(module))
            expected = listed.get(module, [])
            actual = [(endpoint.__name__, path, tuple(methods))
                      for path, endpoint, methods in vars(loaded).get(attribute, ())]
            if actual != expected:
                raise RuntimeError(f"{_module_name(module)}.{attribute} {actual} differs from the route table "
                                   f"in {__name__} {expected}")
