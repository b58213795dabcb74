"""`cfai usage`: what the proxy served, from its usage log, grouped by key, model, day, route or upstream;
and `cfai usage --prune`, which applies the retention limits now.

Imports typer and cli.common at the top; the store and render inside the command. Names in the log came
from clients: they are printed without control characters or terminal escapes (core.printable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cfai_cli.cli.common import JsonOption, complete_choices, storage

if TYPE_CHECKING:
    from cfai_cli.cli.render import OutputOptions

HELP = """Summarise the requests `cfai serve` answered: requests, errors, tokens, neurons, cost and latency
percentiles; then, per Cloudflare account, today's neurons against its 10,000 free a day (docs/cost.md).

Neurons are what Workers AI reported, or estimated from published prices where it reported none (`~` marks
a figure with estimates in it); cost is at list price, $0.011 per 1,000 neurons, free allocation not deducted.

Every request made with a valid key (every request, with --no-auth) is logged in cfai.db (time, key id —
never the key —, route, models, status, tokens, latency, bytes, error code). `cfai serve` deletes rows older
than usage_retention_days (default 90) and stored responses older than responses_retention_days (default
30) at start-up and hourly; --prune does it now.
"""

EPILOG = """Examples:

  cfai usage                      # the last 7 days, by model

  cfai usage --since 24h --by key

  cfai usage --by upstream        # which account or provider answered (see [routes])

  cfai usage --since 2026-11-01 --by day --json

  cfai usage --prune --older-than 30d --json   # delete older rows now, say how many went
"""


BY = ("key", "model", "day", "route", "upstream")  # store.usage.GROUPS, without importing the store at start-up


def _bar(value: int, top: int, width: int = 12) -> str:
    filled = round(width * value / top) if top else 0
    return "█" * filled + "·" * (width - filled)


def usage(
    invocation: typer.Context,
    since: Annotated[str, typer.Option("--since", help="How far back: 30m, 12h, 7d, 2w or a date.")] = "7d",
    by: Annotated[str, typer.Option(
        "--by", autocompletion=complete_choices(*BY),
        help="Group by key, model, day, route or upstream (who answered).")] = "model",
    json_out: JsonOption = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Delete usage rows and stored responses past their retention now, and say how many went "
                        "[config: usage_retention_days, responses_retention_days].")] = False,
    older_than: Annotated[str | None, typer.Option(
        "--older-than", metavar="AGE", show_default=False,
        help="With --prune: delete usage rows older than this (30d, 12h, 2w or a date) instead of "
             "usage_retention_days.")] = None,
) -> None:
    from dataclasses import asdict

    from cfai_cli.cli.render import Terminal
    from cfai_cli.errors import InvalidRequest
    from cfai_cli.service.admin import usage_accounts, usage_summary
    from cfai_cli.store.usage import UsageLog

    if older_than is not None and not prune:
        raise typer.BadParameter("only with --prune", param_hint="--older-than")
    if prune:
        _prune(older_than, json_out, invocation.obj)
        return
    log = UsageLog(storage())
    try:  # the summary GET /v1/admin/usage answers too
        rows = usage_summary(log, since=since, by=by)
    except InvalidRequest as exc:
        raise typer.BadParameter(exc.message, param_hint=f"--{exc.param}") from None
    accounts = usage_accounts(log)
    names = _key_names() if by == "key" else {}
    term = Terminal(options=invocation.obj)
    if json_out:
        groups = [asdict(r) | ({"name": names.get(r.group)} if by == "key" else {}) for r in rows]
        term.json({"since": since, "by": by, "groups": groups, "accounts": [asdict(a) for a in accounts]})
        return
    if not rows:
        term.note(f"no requests since {since}")
    else:
        top = max(r.requests for r in rows)
        # By key: the key's name beside its id (the log keeps only ids; "-" for a key no longer in the store).
        label = ["key", "name"] if by == "key" else [by]
        term.table([*label, "requests", "", "errors", "prompt tok", "completion tok", "neurons", "cost $", "p50 ms",
                    "p95 ms"],
                   [[r.group, *([names.get(r.group) or "-"] if by == "key" else []), str(r.requests),
                     _bar(r.requests, top), str(r.errors), str(r.prompt_tokens),
                     str(r.completion_tokens), _neurons(r.neurons, r.estimated_neurons), f"{r.cost_usd:.4f}",
                     f"{r.p50_ms:.0f}", f"{r.p95_ms:.0f}"] for r in rows])
    for account in accounts:
        term.line(f"{account.account}: {account.line}")


def _key_names() -> dict[str, str]:
    """Key id -> name from the key store (names are labels clients never chose, but kept printable anyway)."""
    from cfai_cli.core.printable import printable
    from cfai_cli.store.keys import KeyStore

    return {r.id: printable(r.name, 64) for r in KeyStore(storage()).list()}


def _neurons(neurons: float, estimated: float) -> str:
    """Neurons, with a `~` when part of them is estimated (docs/cost.md)."""
    return f"{'~' if estimated else ''}{neurons:,.1f}"


def _prune(older_than: str | None, json_out: bool, options: OutputOptions | None) -> None:
    import time

    from cfai_cli.cli.common import settings_from_flags
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.retention import prune, retention_of
    from cfai_cli.store.usage import parse_since

    now = time.time()
    try:
        before = parse_since(older_than, now=now) if older_than is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    settings = settings_from_flags()
    pruned = prune(settings.database, retention_of(settings), now=now, budget=None, usage_before=before,
                   store=settings.storage)
    term = Terminal(options=options)
    if json_out:
        term.json({"usage_rows": pruned.usage_rows, "responses": pruned.responses})
    else:
        term.line(f"deleted {pruned.usage_rows} usage rows and {pruned.responses} stored responses")


def register(app: typer.Typer) -> None:
    app.command("usage", help=HELP, epilog=EPILOG)(usage)
