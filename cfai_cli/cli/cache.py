"""`cfai cache stats|clear`: the proxy's response cache, as stored in cfai.db.

Imports typer and cli.common at the top; the stores and render inside the commands. Entries and bytes come
from the cache's table (live ones: not yet expired), hits and misses from the usage log (every request the
cache took part in has its `cache` there), so they cover the usage log's retention. With `[coordination] url`
the entries are in Redis (store.redis_cache), and both commands work on them there.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cfai_cli.cli.common import JsonOption, storage

cache_app = typer.Typer(
    name="cache", no_args_is_help=True,
    help="The response cache of `cfai serve` ([cache] in config.toml; see docs/cache.md): its size, hits "
         "and misses, and clearing it.",
    epilog="Examples:\n\n  cfai cache stats\n\n  cfai cache stats --json\n\n  cfai cache clear\n\n"
           "  cfai cache clear --key laptop",
)


@cache_app.command("stats")
def stats(
    invocation: typer.Context,
    since: Annotated[str | None, typer.Option("--since", show_default=False,
                                              help="Count hits and misses from this far back only (30m, 12h, 7d, "
                                                   "2w or a date; default: the whole usage log).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Entries and bytes stored (expired ones not yet deleted apart), and requests by what the cache did."""
    import time

    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.cache import CacheStore
    from cfai_cli.store.usage import UsageLog, parse_since

    try:
        start = parse_since(since) if since is not None else 0.0
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    url = _shared_url()
    if url is not None:
        from cfai_cli.store.redis_cache import run_on

        stored = run_on(url, lambda cache: cache.stats())
    else:
        stored = CacheStore(storage()).stats(now=time.time())
    counts = UsageLog(storage()).cache_counts(since=start)
    hits, misses = counts.get("hit", 0), counts.get("miss", 0)
    report: dict[str, object] = {
        "entries": stored.entries, "bytes": stored.bytes, "expired": stored.expired, "hits": hits, "misses": misses,
        "refreshes": counts.get("refresh", 0), "bypassed": counts.get("bypass", 0),
        "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None}
    term = Terminal(options=invocation.obj)
    if json_out:
        term.json(report)
        return
    rate = report["hit_rate"]
    term.table(list(report), [[str(v) for v in list(report.values())[:-1]]
                              + [f"{rate:.1%}" if isinstance(rate, float) else "-"]])

@cache_app.command("clear")
def clear(
    invocation: typer.Context,
    key: Annotated[str | None, typer.Option("--key", metavar="NAME", show_default=False,
                                            help="Only the answers stored for this key (its name or id; every "
                                                 "key of that name).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Delete the stored answers: all of them, or one key's."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.cache import CacheStore
    from cfai_cli.store.keys import KeyStore

    store = CacheStore(storage())
    tenants: list[str] | None = None
    if key is not None:
        keys = KeyStore(store.db)
        tenants = [k.id for k in keys.list() if key in (k.name, k.id)] if store.db.exists() else []
        if not tenants:
            raise typer.BadParameter(f"no key named {key!r} (see `cfai keys list`)", param_hint="--key")
    url = _shared_url()
    if url is not None:
        from cfai_cli.store.redis_cache import run_on

        deleted = run_on(url, lambda cache: cache.clear(tenants=tenants))
    else:
        deleted = store.clear(tenants=tenants)
    term = Terminal(options=invocation.obj)
    if json_out:
        term.json({"deleted": deleted})
    else:
        term.line(f"deleted {deleted} cached answers")


def _shared_url() -> str | None:
    """`[coordination] url` (or $CFAI_COORDINATION_URL): the server keeps its cached answers in that Redis."""
    from cfai_cli.cli.common import settings_from_flags

    return settings_from_flags().coordination.url


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app)
