"""`cfai models`: the live Workers AI catalogue as a table, tab-separated lines, or JSON.

Imports typer and cli.common at the top; the service (httpx, pydantic) and render inside the command.
Reads the same `catalogue()` as the proxy's /v1/models, so both always list the same models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cfai_cli.cli.common import JsonOption, OfflineOption, TimeoutOption, start

if TYPE_CHECKING:
    from cfai_cli.cli.render import OutputOptions
    from cfai_cli.settings import Settings

HELP = """List the models Workers AI offers (live, from /ai/models/search).

On a terminal: a table of name, task, context window, function calling and beta. Piped: one model per line,
tab-separated in that order under a header line (yes/no for flags, - for unknown). --json prints every field.
"""

EPILOG = """Examples:

  cfai models --open                 # the model browser of a running `cfai serve`

  cfai models --task "Text Generation"

  cfai models --search llama | cut -f1

  cfai models --json | jq -r '.[] | select(.function_calling) | .id'
"""


def models(
    invocation: typer.Context,
    task: Annotated[str | None, typer.Option("--task", help='Only this task, e.g. "Text Generation".',
                                             show_default=False)] = None,
    search: Annotated[str | None, typer.Option("--search", help="Only models whose name or description match.",
                                               show_default=False)] = None,
    json_out: JsonOption = False,
    open_page: Annotated[bool, typer.Option("--open", help="Open the model browser of a running `cfai serve` "
                                            "in your web browser instead.")] = False,
    url: Annotated[str, typer.Option("--url", help="With --open: where `cfai serve` listens.")
                   ] = "http://127.0.0.1:3000",
    offline: OfflineOption = False,
    timeout: TimeoutOption = None,
) -> None:
    if open_page:
        open_browser(url.rstrip("/"), invocation.obj)
        return
    import asyncio

    from cfai_cli.service.context import open_context
    from cfai_cli.service.models import ModelInfo, catalogue

    term, settings = start(invocation.obj, offline=offline, timeout=timeout)

    async def fetch() -> list[ModelInfo]:
        async with open_context(settings) as ctx:
            return await catalogue(ctx, task=task, search=search)

    with term.waiting("fetching the catalogue…"):
        found = asyncio.run(fetch())
    if not task and not search:
        remember(settings, {m.id: m.task or None for m in found})
    if json_out:
        term.json([m.to_json() for m in found])
        return

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    if not found:
        term.note("no models matched")
        return
    rows = [[m.id, m.task or "-", f"{m.context_window}" if m.context_window else "-", yes(m.function_calling),
             yes(m.beta)] for m in found]
    term.table(["name", "task", "context", "tools", "beta"], rows)


def open_browser(url: str, options: OutputOptions | None) -> None:
    """Open {url}/ui if a cfai server answers /health there; say so when none does."""
    import urllib.request
    import webbrowser

    from cfai_cli.cli.render import Terminal
    from cfai_cli.errors import UpstreamError

    try:
        with urllib.request.urlopen(url + "/health", timeout=3) as response:
            alive = response.status == 200
    except (OSError, ValueError):
        alive = False
    if not alive:
        raise UpstreamError(f"No cfai server answers at {url}. Start one with `cfai serve`, or pass --url.")
    page = url + "/ui"
    term = Terminal(options=options)
    term.line(page)
    if not webbrowser.open(page):
        term.note("Could not start a web browser here; open the address above yourself.")


def remember(settings: Settings, ids: dict[str, str | None]) -> None:
    """Keep the ids and their tasks for shell completion of -m (best effort: a read-only data dir just means
    no cache)."""
    import contextlib
    import json

    from cfai_cli.cli.common import MODELS_CACHE
    from cfai_cli.settings import write_private

    with contextlib.suppress(OSError):
        write_private(settings.data_dir / MODELS_CACHE, json.dumps(ids))


def register(app: typer.Typer) -> None:
    app.command("models", help=HELP, epilog=EPILOG)(models)
