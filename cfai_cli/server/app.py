"""The Starlette app factory and `serve()`: the OpenAI-compatible proxy in front of Workers AI.

Imports starlette, uvicorn (in serve only), service, store, settings and errors; never typer or rich.
Authentication is on unless the caller disables it, which `check_bind` allows only on loopback.
With `--workers N` the parent makes a private directory for the workers' metric files
(PROMETHEUS_MULTIPROC_DIR), so /metrics in any worker reports them all; it is removed when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp

from cfai_cli.errors import ConfigError
from cfai_cli.server import heap
from cfai_cli.server.auth import KeyAuth
from cfai_cli.server.backends import Backends
from cfai_cli.server.body import BodyGuard
from cfai_cli.server.console import ConsoleLog
from cfai_cli.server.errors import HANDLERS, install_redaction
from cfai_cli.server.front import Front
from cfai_cli.server.guards import ConcurrencyCap
from cfai_cli.server.housekeeping import Housekeeping
from cfai_cli.server.loopback import LoopbackOnly
from cfai_cli.server.meter import AccountMeter
from cfai_cli.server.metrics import Metrics, RouteLabels
from cfai_cli.server.observe import Observe
from cfai_cli.server.recorder import UsageRecorder
from cfai_cli.server.routes import FILES_PREFIX, routes, warm
from cfai_cli.server.routes.metrics import metrics_routes
from cfai_cli.server.routes.ui import ui_routes
from cfai_cli.service.context import Context, open_context, scrubber_for
from cfai_cli.settings import Settings, load_settings
from cfai_cli.store.budgets import Budgets, SpendStore
from cfai_cli.store.coordination import CoordinatedBudgets, budgets, failure_logs, rate_limits, shared_parts
from cfai_cli.store.hot import HotPath
from cfai_cli.store.keys import KeyStore
from cfai_cli.store.limit_rule import RateLimits
from cfai_cli.store.sql import open_database
from cfai_cli.store.usage import UsageLog

if TYPE_CHECKING:
    from cfai_cli.service.context import Transport

EXPOSED_HEADERS = ("retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                   "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                   "x-ratelimit-reset-tokens", "x-cfai-overhead-ms", "x-cfai-upstream", "x-cfai-model",
                   "x-cfai-dropped-tools", "x-cfai-cache", "x-cfai-neurons", "x-cfai-neurons-source")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, no_auth: bool, keys: KeyStore) -> None:
    """Refuse the two ways a proxy holding a Cloudflare token could end up open to others."""
    if no_auth and not is_loopback(host):
        raise ConfigError(f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1), not {host}.")
    if not no_auth and keys.count_active() == 0:
        raise ConfigError(
            "No API keys exist yet, so every request would be refused. Run `cfai keygen` to make one"
            + (", or use --no-auth on this loopback address." if is_loopback(host) else ".")
        )


def _warm() -> None:
    """What the first requests and the batch executor need, imported off the event loop once the server is
    up: the endpoint modules (server.routes) and the executor with the services a batch line runs, ~150
    modules and 130-170 ms of CPU (issue 25, 2026-12-01) that /health need not wait for."""
    try:
        warm()
    except Exception:  # a broken endpoint module: said loudly; its requests answer the error as a 500
        logging.getLogger("cfai.server").exception("loading the route modules failed")
    importlib.import_module("cfai_cli.service.batch_executor")


# When the warm-up (and housekeeping's first pass) starts: once /health has answered (a readiness probe,
# `cfai serve`'s own wait) or a batch is created (the executor starts after the warm-up), else this long after
# start-up. uvicorn binds its socket after the lifespan has started, and the first requests should not share the
# interpreter with ~150 ms of imports; a request for an endpoint family before the warm-up imports that family's
# module itself. (A fixed 0.5 s was not enough on a loaded machine: 15 % of the CPU to the first /health 200
# saved, not 12 %.)
WARM_DELAY = 1.0


async def _after_start(app: Starlette, ctx: Context, recorder: UsageRecorder, no_auth: bool, limiter: RateLimits,
                       ledger: Budgets, housekeeping: Housekeeping) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app.state.warm_up.wait(), WARM_DELAY)
    await asyncio.sleep(0.05)  # the probe's answer is written first
    housekeeping.start()  # its first pass (in a thread) imports the retention and cache stores
    await asyncio.to_thread(_warm)
    from cfai_cli.service.batch_executor import BatchExecutor  # loaded by _warm

    # Batches run in the background of every server process, each batch in one process at a time (leases).
    app.state.batches = BatchExecutor(ctx, sink=recorder.add, keys_required=not no_auth, limiter=limiter,
                                      ledger=ledger)
    app.state.batches.start()


async def _stop_after_start(app: Starlette, background: asyncio.Task[None]) -> None:
    background.cancel()
    await asyncio.gather(background, return_exceptions=True)
    if hasattr(app.state, "batches"):
        await app.state.batches.stop()


def create_app(
    settings: Settings,
    *,
    no_auth: bool = False,
    transport: Transport | None = None,
    image_transport: httpx.AsyncBaseTransport | None = None,
    metrics_dir: str | None = None,
    console: str | None = None,
) -> Starlette:
    """The proxy app; `transport` replaces the network to Workers AI (tests: an httpx transport, or a `Lean`
    such as upstream.inprocess's emulator); `metrics_dir` is the PROMETHEUS_MULTIPROC_DIR of a worker of
    `cfai serve --workers N`; `console` ("plain" or "colour") writes a line per request to stdout
    (server.console; `cfai serve` on a terminal).

    Middleware: one layer (server.front) whose pieces are, outermost first: the body deadline and drain, CORS
    (only when origins are configured), security headers, the loopback guard (only without auth), usage and
    metrics, the concurrency cap, then key authentication with scopes, model patterns and rate limits.
    """
    recorder = UsageRecorder(UsageLog(settings.storage))
    hot = HotPath(settings.database)  # one tick's rate-limit and budget writes commit together (store.hot)
    limiter, coordinated = rate_limits(settings, hot)  # [coordination] url: shared by replicas in Redis
    shared = shared_parts(coordinated)  # and then the router's rests and the response cache too
    ledger = budgets(settings, hot, coordinated)  # per-key spend: Observe settles, KeyAuth checks (Redis with a url)
    housekeeping = Housekeeping(settings)
    if isinstance(ledger, CoordinatedBudgets) and isinstance(ledger.durable, SpendStore):
        recorder.retries.append(ledger.durable.retry)  # settles kept while PostgreSQL was away

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_redaction(scrubber)  # again: uvicorn has set up its own log handlers by now
        heap.settle()  # big answers' blocks kept for the next request, not faulted in again (server.heap)
        # The router's daily caps per Cloudflare account read what the usage log (and the recorder) say was spent.
        meter = AccountMeter(UsageLog(settings.storage), recorder)
        # Stopped in reverse order, each whatever the others did: a failing stop must not lose the recorder's
        # last rows (the rows of the last second are written on a clean shutdown).
        async with AsyncExitStack() as stopping:
            stopping.callback(hot.close)
            if coordinated is not None:
                stopping.push_async_callback(coordinated.close)
            stopping.callback(metrics.close)
            ctx = await stopping.enter_async_context(open_context(
                settings, transport=transport, image_transport=image_transport, meter=meter,
                rests=shared[0] if shared else None))
            if shared is not None:
                from cfai_cli.service.cache import SHARED_CACHE  # the response cache's service: chat models and all

                ctx.cache[SHARED_CACHE] = shared[1]
            app.state.ctx = live[0] = ctx
            recorder.start()
            stopping.push_async_callback(recorder.stop)
            stopping.push_async_callback(housekeeping.stop)  # started with the warm-up (_after_start)
            if console_log is not None:
                console_log.start()
                stopping.callback(console_log.stop)
            background = asyncio.get_running_loop().create_task(
                _after_start(app, ctx, recorder, no_auth, limiter, ledger, housekeeping))
            stopping.push_async_callback(_stop_after_start, app, background)
            yield

    # Fail at start-up, not on the first request, when credentials are missing.
    settings.require_credentials()
    scrubber = scrubber_for(settings)
    install_redaction(scrubber)
    console_log = ConsoleLog(colour=console == "colour", scrubber=scrubber) if console else None
    max_body = int(settings.max_body_mb * 1024 * 1024)
    # The service context once the lifespan has opened it, read by the middleware on every request (through
    # app.state, a hasattr and a getattr of Starlette's State each time, ~2 µs).
    live: list[Context | None] = [None]

    def ctx_cache() -> dict[str, Any]:
        ctx = live[0]
        return ctx.cache if ctx is not None else {}

    metrics = Metrics(retries=lambda: live[0].router.retries if live[0] is not None else 0,
                      multiprocess_dir=metrics_dir)
    for failures in failure_logs(coordinated, shared):
        failures.listener = metrics.coordination_failure
    pages = [Route(path, endpoint, methods=methods) for path, endpoint, methods in ui_routes()] if settings.ui else []
    table = [*routes(), *metrics_routes(), *pages]
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    auth = None
    if not no_auth:
        files = () if settings.image_url_auth else (f"/v1{FILES_PREFIX}", FILES_PREFIX)
        auth = KeyAuth(keys=KeyStore(settings.storage, hot=hot), limiter=limiter,
                       max_in_flight=settings.max_in_flight_per_key, open_prefixes=files, ledger=ledger,
                       hold_seconds=settings.timeout + 60, cache=ctx_cache)
    # One layer, its pieces in order (server.front): the body deadline and drain (outermost: it drains what a
    # client still sends after an early answer, once everything inside is done), CORS (only when origins are
    # configured), security headers, the loopback guard (only without auth: loopback names only, no other
    # site's pages, DNS rebinding, cross-site posts), usage and metrics, the concurrency cap, key authentication.
    front = Middleware(
        Front, body=BodyGuard(body_timeout=settings.body_timeout),
        cors={"allow_origins": origins, "allow_methods": ["GET", "POST", "PATCH", "DELETE"], "allow_headers": ["*"],
              "expose_headers": list(EXPOSED_HEADERS), "max_age": 600} if origins else None,
        loopback=LoopbackOnly(origins=origins) if no_auth else None,
        observe=Observe(recorder=recorder, metrics=metrics, limiter=limiter, labels=RouteLabels(table),
                        scrubber=scrubber, keys_required=not no_auth, ledger=ledger, cache=ctx_cache,
                        console=console_log),
        cap=ConcurrencyCap(limit=settings.max_concurrency), auth=auth)
    app: Starlette = Starlette(routes=table, exception_handlers=HANDLERS, middleware=[front], lifespan=lifespan)
    app.state.max_body_bytes = max_body  # uploads (audio, image edits)
    app.state.max_json_bytes = min(max_body, int(settings.max_json_mb * 1024 * 1024))
    app.state.offline = settings.offline
    app.state.metrics = metrics
    app.state.recorder = recorder
    app.state.backends = Backends(open_database(settings.storage) if settings.store.url else None, coordinated)
    app.state.housekeeping = housekeeping
    app.state.scrubber = scrubber
    app.state.console = console_log
    app.state.keys_required = not no_auth
    app.state.warm_up = asyncio.Event()  # set by /health and a new batch: the warm-up may start (_after_start)
    return app


_WORKER_STATE = "CFAI_SERVE_STATE"  # JSON: the command-line flags the settings came from, and no_auth


def worker_app() -> ASGIApp:
    """The app in each of uvicorn's worker processes (`cfai serve --workers N`): the settings loaded again,
    as the parent loaded them, from the same flags, the inherited environment and the config file."""
    state = json.loads(os.environ[_WORKER_STATE])
    settings = load_settings(state["flags"])
    _protocol(settings)
    return create_app(settings, no_auth=state["no_auth"], metrics_dir=os.environ.get(METRICS_DIR_ENV),
                      console=state.get("console"))


METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client itself when a worker imports it
_METRICS_PREFIX = ".metrics-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metrics_directory(parent: Path) -> Path:
    """A fresh private (0700) directory for the workers' metric files, named after this process; those
    that servers which died without cleaning up left behind are removed first."""
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in parent.glob(f"{_METRICS_PREFIX}*"):
        pid = stale.name[len(_METRICS_PREFIX):].split("-", 1)[0]
        if stale.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{_METRICS_PREFIX}{os.getpid()}-", dir=parent))


def _protocol(settings: Settings) -> str:
    """uvicorn's `http` option: its httptools protocol with a deadline for request heads (server.protocol)."""
    from cfai_cli.server.protocol import HeadTimeoutProtocol

    HeadTimeoutProtocol.header_timeout = settings.header_timeout
    return "cfai_cli.server.protocol:HeadTimeoutProtocol"


def _websockets() -> Any:
    """uvicorn's `ws` option: its automatic choice, imported at the first upgrade request (server.upgrade)."""
    from cfai_cli.server.upgrade import websocket_option

    return websocket_option()


def check_shared_store(settings: Settings) -> None:
    """A PostgreSQL store is shared by replicas: refuse to serve it without shared coordination (Redis), whose
    limits and budget holds every replica must see (docs/database.md)."""
    from cfai_cli.core.store_url import shared_store_problem

    problem = shared_store_problem(settings.store.url, settings.coordination.url)
    if problem:
        raise ConfigError(problem + ".")
    if settings.store.url:  # reachable (and migrated) before serving: else one clear error, not 500s later
        from cfai_cli.store.sql import open_database

        with open_database(settings.store.url).transaction():
            pass


def serve(settings: Settings, *, host: str, port: int, no_auth: bool = False, log_level: str = "info",
          workers: int = 1, access_log: bool = False, flags: Mapping[str, Any] | None = None,
          console: str | None = None) -> None:
    """Run the proxy with uvicorn until interrupted; `workers` > 1 runs that many processes on one socket,
    each loading its settings again from `flags` (what `load_settings` made `settings` from), the environment
    it inherits and the config file: no settings (and so no token) are written anywhere for them.

    uvicorn picks uvloop and httptools when they are installed (they are dependencies on the platforms
    that have them): 10-40% more requests per second in A/B runs of bench/run.py. `console` is create_app's.
    """
    check_shared_store(settings)
    check_bind(host, no_auth=no_auth, keys=KeyStore(settings.storage))
    import uvicorn

    # uvicorn's access log formats and writes a line per request (8% of the CPU under load, py-spy); the
    # usage log already records every request, so it is opt-in (`cfai serve --access-log`).
    options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "server_header": False,
                               "access_log": access_log,
                               "proxy_headers": False, "http": _protocol(settings), "ws": _websockets()}
    if workers <= 1:
        app: ASGIApp = create_app(settings, no_auth=no_auth, console=console)
        uvicorn.run(app, **options)
        return
    # Each worker is a fresh process that imports the app by name and inherits this environment.
    settings.database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    metrics_dir = metrics_directory(settings.database.parent)
    try:
        os.environ[_WORKER_STATE] = json.dumps({"flags": dict(flags or {}), "no_auth": no_auth, "console": console})
        os.environ[METRICS_DIR_ENV] = str(metrics_dir)  # the workers inherit it before importing prometheus_client
        uvicorn.run("cfai_cli.server.app:worker_app", factory=True, workers=workers, **options)
    finally:
        os.environ.pop(_WORKER_STATE, None)
        os.environ.pop(METRICS_DIR_ENV, None)
        with contextlib.suppress(OSError):
            shutil.rmtree(metrics_dir)
