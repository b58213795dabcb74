"""`cfai serve`: run the OpenAI-compatible proxy (Starlette + uvicorn) in front of Workers AI.

Imports typer and cli.common at the top; the server package (starlette, uvicorn, httpx) only inside the
command. The server refuses unsafe binds itself (--no-auth off loopback, no keys); this module only reports.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cfai_cli.cli.common import OfflineOption, TimeoutOption, offline_requested

HELP = """Serve the OpenAI API (chat, embeddings, images, audio, moderations, rerank and more) and the Anthropic
Messages API from Workers AI.

Clients send `Authorization: Bearer <key>` (or `x-api-key`) with a key from `cfai keygen`. --no-auth is allowed
only on a loopback address. Routes also answer without the /v1 prefix. Ctrl-C stops the server.
Exits with status 3 before listening when the port is in use or the address cannot be bound (try --port N).

On a terminal, each request is one line on stdout: time, method, path, status, milliseconds, model, the key's
name, tokens and neurons (`~`: estimated). Not when stdout is piped or redirected, nor with `cfai -q serve`.

More Cloudflare accounts, OpenAI-compatible providers as fallbacks, and model routes with failover come from
[upstreams.*] and [routes] in config.toml (docs/routing.md); GET /health shows their state.
"""

EPILOG = """Examples:

  KEY=$(cfai keygen) && cfai serve --port 3000

  cfai serve --offline --no-auth     # canned answers, for testing OpenAI apps in CI
"""


def serve(
    invocation: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 3000,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Accept requests without a key (loopback only).")
                       ] = False,
    image_ttl: Annotated[float | None, typer.Option(
        "--image-ttl", min=0.0001, metavar="HOURS", show_default=False,
        help="Keep images made with response_format=url this long [config: image_ttl_hours; default 24].")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", metavar="ORIGIN", show_default=False,
        help="Allow browser pages from ORIGIN (repeatable; e.g. http://localhost:5173) [config: cors_origins].")
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(
        "--max-concurrency", min=1, show_default=False,
        help="Answer 503 beyond this many requests in flight [config: max_concurrency; default 512].")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Server processes sharing the port (e.g. one per CPU core).")] = 1,
    access_log: Annotated[bool, typer.Option(
        "--access-log",
        help="Also print uvicorn's line per request on stdout (every request is in `cfai usage` anyway).")
    ] = False,
    no_ui: Annotated[bool, typer.Option(
        "--no-ui", help="Do not serve the browser page at / and /ui [config: ui = false].")] = False,
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
) -> None:
    from cfai_cli.cli.render import Terminal
    from cfai_cli.server.app import check_bind, check_shared_store
    from cfai_cli.server.app import serve as run_server
    from cfai_cli.server.listen import check_port, reachable_hosts
    from cfai_cli.settings import load_settings
    from cfai_cli.store.keys import KeyStore

    term = Terminal(options=invocation.obj)
    # The flags as settings overrides (None: not given), so `--workers N` processes load the same settings.
    flags = {"offline": offline_requested(offline, invocation.obj), "timeout": timeout, "image_ttl_hours": image_ttl,
             "cors_origins": ",".join(cors_origin) if cors_origin else None, "max_concurrency": max_concurrency,
             "ui": False if no_ui else None}
    settings = load_settings(flags)
    settings.require_credentials()
    # Checked here too (serve() checks again) so a refusal is not preceded by a "serving at" line.
    check_shared_store(settings)
    check_bind(host, no_auth=no_auth, keys=KeyStore(settings.storage))
    check_port(host, port)  # a busy port: one `cfai:` line (exit 3), not uvicorn's "startup complete" then an error
    if settings.offline:
        term.offline_warning()
    shown_host = f"[{host}]" if ":" in host else host
    auth = "off (--no-auth)" if no_auth else "Bearer keys from `cfai keygen`"
    term.note(f"OpenAI base URL: http://{shown_host}:{port}/v1 · auth: {auth}")
    others = reachable_hosts(host)
    if others:  # 0.0.0.0 is where it listens, not an address anyone can open: this machine's own addresses
        more = f" (also {', '.join(others[1:])})" if others[1:] else ""
        term.note(f"from other machines: http://{others[0]}:{port}/v1{more}")
    if settings.ui:
        term.note(f"browser page: http://{others[0] if others else shown_host}:{port}/")
    routing = settings.routing
    if routing.upstreams or routing.routes:
        names = ["cloudflare", *(u.name + (f" ({len(u.credentials)} keys)" if len(u.credentials) > 1 else "")
                                 for u in routing.upstreams)]
        routes = f" · routes: {', '.join(routing.routes)}" if routing.routes else ""
        term.note(f"upstreams: {', '.join(names)}{routes}")
        for upstream in routing.upstreams:
            for cred in upstream.credentials:
                if cred.env and not cred.value:
                    term.warn(f"{upstream.name}: ${cred.env} is not set, so that key is unavailable.")
    # A line per request when a person watches stdout (not when it is piped or logged to a file, nor with -q).
    console = None if term.quiet or not term.out_tty else "plain" if term.no_color else "colour"
    run_server(settings, host=host, port=port, no_auth=no_auth, workers=workers, access_log=access_log, flags=flags,
               console=console)


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP, epilog=EPILOG)(serve)
