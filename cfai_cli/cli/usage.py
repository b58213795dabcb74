"""`cfai usage`: what the proxy served, from its usage log, grouped by key, model, day, route or upstream.

Imports typer and cli.common at the top; the store and render inside the command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cfai_cli.cli.common import JsonOption, locations

HELP = """Summarise the requests `cfai serve` answered: requests, errors, tokens and latency percentiles.

Every proxied request is logged in cfai.db (time, key id — never the key —, route, models, status, tokens,
latency, bytes, error code).
"""

EPILOG = """Examples:

  cfai usage                      # the last 7 days, by model

  cfai usage --since 24h --by key

  cfai usage --by upstream        # which account or provider answered (see [routes])

  cfai usage --since 2026-11-01 --by day --json
"""


def _bar(value: int, top: int, width: int = 12) -> str:
    filled = round(width * value / top) if top else 0
    return "█" * filled + "·" * (width - filled)


def usage(
    since: Annotated[str, typer.Option("--since", help="How far back: 30m, 12h, 7d, 2w or a date.")] = "7d",
    by: Annotated[str, typer.Option(
        "--by", help="Group by key, model, day, route or upstream (who answered).")] = "model",
    json_out: JsonOption = False,
) -> None:
    from dataclasses import asdict

    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.usage import GROUPS, UsageLog, parse_since

    if by not in GROUPS:
        raise typer.BadParameter(f"choose one of {', '.join(GROUPS)}", param_hint="--by")
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    rows = UsageLog(locations().database).summarise(since=start, by=by)
    term = Terminal()
    if json_out:
        term.json([asdict(r) for r in rows])
        return
    if not rows:
        term.note(f"no requests since {since}")
        return
    top = max(r.requests for r in rows)
    term.table([by, "requests", "", "errors", "prompt tok", "completion tok", "p50 ms", "p95 ms"],
               [[r.group, str(r.requests), _bar(r.requests, top), str(r.errors), str(r.prompt_tokens),
                 str(r.completion_tokens), f"{r.p50_ms:.0f}", f"{r.p95_ms:.0f}"] for r in rows])


def register(app: typer.Typer) -> None:
    app.command("usage", help=HELP, epilog=EPILOG)(usage)
