"""The model catalogue for both front ends: Workers AI's /ai/models/search, normalised and cached.

Imports core, upstream (through Context), errors. The proxy's /v1/models and `cfai models` both read
`catalogue()`, so they always agree on what exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cfai_cli.core.catalog import known_vision, resolve_model
from cfai_cli.core.cost import Prices, parse_prices
from cfai_cli.core.workers.queue import queue_flag
from cfai_cli.errors import CfaiError, InvalidRequest, ModelNotFound
from cfai_cli.service.context import Context

CACHE_SECONDS = 600


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    task: str
    description: str
    created: int
    context_window: int | None
    function_calling: bool
    reasoning: bool
    beta: bool
    deprecated: str | None
    vision: bool = False
    prices: Prices = field(default_factory=Prices)  # its published prices (core.cost), for estimating neurons
    async_queue: bool = False  # flagged for Workers AI's async batch (core.workers.queue.queue_flag)

    @property
    def owned_by(self) -> str:
        parts = self.id.split("/")
        return parts[1] if len(parts) > 2 else "cloudflare"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "task": self.task, "description": self.description, "created": self.created,
                "context_window": self.context_window, "function_calling": self.function_calling,
                "reasoning": self.reasoning, "beta": self.beta, "planned_deprecation_date": self.deprecated,
                "vision": self.vision}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _created(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace(" ", "T").replace("Z", "+00:00"))
        except ValueError:
            return 0
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp())
    return 0


def parse_model(item: Mapping[str, Any]) -> ModelInfo | None:
    """One /ai/models/search item; property values may be strings, numbers, arrays or objects."""
    name = item.get("name")
    if not isinstance(name, str) or not name.startswith("@"):
        return None
    props: dict[str, Any] = {}
    for prop in item.get("properties") or []:
        if isinstance(prop, Mapping) and isinstance(prop.get("property_id"), str):
            props[prop["property_id"]] = prop.get("value")
    task = item.get("task")
    window = props.get("context_window") or props.get("max_input_tokens")
    try:
        context_window = int(float(window)) if window is not None else None
    except (TypeError, ValueError):
        context_window = None
    deprecated = props.get("planned_deprecation_date")
    return ModelInfo(
        id=name,
        task=str(task.get("name", "")) if isinstance(task, Mapping) else str(task or ""),
        description=str(item.get("description") or ""),
        created=_created(item.get("created_at")),
        context_window=context_window,
        function_calling=_truthy(props.get("function_calling")),
        reasoning=_truthy(props.get("reasoning")),
        beta=_truthy(props.get("beta")),
        deprecated=str(deprecated) if deprecated else None,
        vision=_truthy(props.get("vision")) or known_vision(name),
        prices=parse_prices(props.get("price")),
        async_queue=queue_flag(props.get("async_queue")),
    )


async def catalogue(ctx: Context, *, task: str | None = None, search: str | None = None) -> list[ModelInfo]:
    """Every model Workers AI offers (optionally filtered upstream), cached for ten minutes."""
    key = f"models:{task or ''}:{search or ''}"  # the full catalogue's: service.catalogue_cache.FULL
    cached = ctx.cache.get(key)
    if cached is not None and ctx.clock() - cached[0] < CACHE_SECONDS:
        return list(cached[1])
    params: dict[str, str | int] = {}
    if task:
        params["task"] = task
    if search:
        params["search"] = search
    # One fetch at a time per listing: requests that need the catalogue while it is being fetched (the first
    # Anthropic requests after start-up all do) wait for that fetch instead of each paging through it again.
    flight = ctx.cache.get(f"{key}:flight")
    if not isinstance(flight, asyncio.Task) or flight.done():
        flight = ctx.cache[f"{key}:flight"] = asyncio.ensure_future(ctx.workers.models_search(params))
    items = await asyncio.shield(flight)
    models = sorted((m for m in map(parse_model, items) if m is not None), key=lambda m: m.id)
    ctx.cache[key] = (ctx.clock(), models)
    return list(models)


def openai_model(model_id: str, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


async def list_openai_models(ctx: Context) -> dict[str, Any]:
    """GET /v1/models: every Workers AI model plus the configured aliases and routes (tools look names up here)."""
    models = await catalogue(ctx)
    data = [openai_model(m.id, m.created, m.owned_by) for m in models]
    known = {m.id: m for m in models}
    routes = ctx.settings.routing.routes
    for alias, target in sorted(ctx.settings.aliases.items()):
        if target in known and alias not in routes:
            data.append(openai_model(alias, known[target].created, "cfai-alias"))
    data += [openai_model(name, 0, "cfai-route") for name in routes]
    return {"object": "list", "data": data}


async def retrieve_openai_model(ctx: Context, name: str) -> dict[str, Any]:
    route = ctx.settings.routing.route_name(name)
    if route is not None:
        return openai_model(route, 0, "cfai-route")
    model_id = resolve_model(name, ctx.settings.aliases)
    for model in await catalogue(ctx):
        if model.id == model_id:
            return openai_model(name, model.created, "cfai-alias" if name != model_id else model.owned_by)
    raise ModelNotFound(f"The model {name!r} does not exist on Workers AI.", param="model")


async def suggest_models(ctx: Context, model_id: str) -> str:
    """' Did you mean …?' with catalogue ids close to an unknown one, or '' (never fails)."""
    import difflib

    try:
        names = [m.id for m in await catalogue(ctx)]
    except CfaiError:
        return ""
    # An id that extends the one asked for (a -fast or -fp8 variant) is the likeliest meant.
    close = [n for n in names if n.startswith(model_id)][:3]
    close += [n for n in difflib.get_close_matches(model_id, names, n=3, cutoff=0.6) if n not in close]
    close = close[:3]
    return f" Did you mean {' or '.join(close)}?" if close else " `cfai models` lists the models."


# ---- Anthropic's shape (GET /v1/models with an anthropic-version header) ------------------------------


def anthropic_model(openai: dict[str, Any], info: ModelInfo | None = None) -> dict[str, Any]:
    """An OpenAI model object in Anthropic's words: `created_at` is RFC 3339, `display_name` the id's last part,
    `max_input_tokens` the context window where the catalogue knows it (`info`: the Workers AI model it runs)."""
    created = datetime.fromtimestamp(int(openai.get("created") or 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    model_id = str(openai["id"])
    return {"type": "model", "id": model_id, "display_name": model_id.rsplit("/", 1)[-1], "created_at": created,
            "lifecycle": "active", "max_input_tokens": info.context_window if info is not None else None}


def anthropic_page(models: list[dict[str, Any]], *, limit: int = 20, after_id: str | None = None,
                   before_id: str | None = None) -> dict[str, Any]:
    """One page of Anthropic's model list: `after_id`/`before_id` are cursors (ids), `limit` 1..1000."""
    if not 1 <= limit <= 1000:
        raise InvalidRequest("Invalid value for 'limit': expected 1 to 1000.", param="limit", code="invalid_value")
    ids = [m["id"] for m in models]
    for name, cursor in (("after_id", after_id), ("before_id", before_id)):
        if cursor is not None and cursor not in ids:
            raise InvalidRequest(f"No model with id '{cursor}' in the list.", param=name, code="invalid_value")
    if before_id is not None:
        end = ids.index(before_id)
        page = models[max(0, end - limit):end]
        more = end - limit > 0
    else:
        start = ids.index(after_id) + 1 if after_id is not None else 0
        page = models[start:start + limit]
        more = start + limit < len(models)
    return {"data": page, "has_more": more, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None}


async def list_anthropic_models(ctx: Context, *, limit: int = 20, after_id: str | None = None,
                                before_id: str | None = None) -> dict[str, Any]:
    """The same models as the OpenAI list (Workers AI's, the aliases with Claude's names, the routes)."""
    listed = await list_openai_models(ctx)
    known = {m.id: m for m in await catalogue(ctx)}

    def info(name: str) -> ModelInfo | None:
        return known.get(resolve_model(name, ctx.settings.aliases))

    return anthropic_page([anthropic_model(m, info(m["id"])) for m in listed["data"]], limit=limit,
                          after_id=after_id, before_id=before_id)


async def retrieve_anthropic_model(ctx: Context, name: str) -> dict[str, Any]:
    found = await retrieve_openai_model(ctx, name)
    known = {m.id: m for m in await catalogue(ctx)}
    return anthropic_model(found, known.get(resolve_model(name, ctx.settings.aliases)))
