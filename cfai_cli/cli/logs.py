"""`cfai logs`: the exchanges `cfai chat` logged (newest last), searched and filtered; `cfai logs path`, and
`cfai logs on|off|status` to turn the log on and off (the `log` setting in config.toml).

Imports typer and cli.common at the top; the store, settings and render inside the commands, so `cfai --help`
stays cheap. The log file is read with the data directory alone (cli.common.locations), so a broken config
file does not hide the history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfai_cli.cli.common import JsonOption, locations

if TYPE_CHECKING:
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.exchanges import Exchange

HELP = """Show the exchanges `cfai chat` logged, newest last: time, conversation id (cid), API, model, tokens,
neurons, the prompt and the answer. Every exchange is logged (one-shot, --responses, offline, each
interactive turn) in logs.db in the data directory (0600); `cfai chat -c` continues the latest conversation
and `cfai chat --cid ID` any earlier one.

Opt out with `cfai chat --no-log`, `cfai logs off` (log = false in config.toml) or CFAI_LOG=0. The newest
log_max_rows exchanges are kept (default 10,000); log_retention_days (default 0: no limit) deletes older ones.
"""

EPILOG = """Examples:

  cfai logs                       # the last 3 exchanges

  cfai logs -n 0 --cid 3f2a9c01b7de   # a whole conversation

  cfai logs -q "error budget" --since 7d

  cfai logs -n 1 --json | jq -r '.[0].cid'

  cfai logs path        cfai logs off        cfai logs status
"""

CountOption = Annotated[int, typer.Option("-n", "--count", min=0, help="How many exchanges, the newest (0: all).")]
QueryOption = Annotated[str | None, typer.Option(
    "-q", "--query", metavar="TEXT", help="Only exchanges whose prompt, system prompt or answer contain every word "
                                          "of TEXT (case-insensitive).", show_default=False)]
CidOption = Annotated[str | None, typer.Option("--cid", metavar="ID", help="Only the conversation with this id.",
                                               show_default=False)]
SinceOption = Annotated[str | None, typer.Option("--since", help="Only exchanges since: 30m, 12h, 7d, 2w or a date.",
                                                 show_default=False)]

logs_app = typer.Typer(name="logs", help=HELP, epilog=EPILOG, invoke_without_command=True)


@logs_app.callback()
def logs(invocation: typer.Context, count: CountOption = 3, query: QueryOption = None, cid: CidOption = None,
         since: SinceOption = None, json_out: JsonOption = False) -> None:
    if invocation.invoked_subcommand is None:
        show(invocation, count=count, query=query, cid=cid, since=since, json_out=json_out)


@logs_app.command("list", epilog="Example:\n\n  cfai logs list -n 10 --json")
def list_logs(invocation: typer.Context, count: CountOption = 3, query: QueryOption = None, cid: CidOption = None,
              since: SinceOption = None, json_out: JsonOption = False) -> None:
    """The same as `cfai logs`: the logged exchanges, newest last."""
    show(invocation, count=count, query=query, cid=cid, since=since, json_out=json_out)


def show(invocation: typer.Context, *, count: int, query: str | None, cid: str | None, since: str | None,
         json_out: bool) -> None:
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.exchanges import ExchangeLog
    from cfai_cli.store.usage import parse_since

    try:
        after = parse_since(since) if since is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    log = ExchangeLog(locations().log_file)
    found = log.recent(limit=count or None, query=query, cid=cid, since=after)
    term = Terminal(options=invocation.obj)
    if json_out:
        term.json([x.as_json() for x in found])
        return
    if not found:
        close = log.cids_starting(cid[:4]) if cid else []
        term.note("no exchanges logged" + (f" in conversation {cid!r}" if cid else "")
                  + (" that match" if query or since else "")
                  + (f" (conversations starting so: {', '.join(close)})" if close else ""))
        return
    for exchange in found:
        _render(term, exchange)


def _render(term: Terminal, x: Exchange) -> None:
    """One exchange. What the user typed or piped is shown without control characters or terminal escapes
    (core.printable): a log read on a terminal must not rewrite it; the answer is rendered as `cfai chat` did."""
    from datetime import datetime

    from cfai_cli.core.printable import printable

    when = datetime.fromtimestamp(x.ts).strftime("%Y-%m-%d %H:%M:%S")
    model = x.model or x.model_asked
    parts = [f"#{x.id}", when, f"cid {x.cid}", x.api, model]
    if x.prompt_tokens is not None:
        parts.append(f"{x.prompt_tokens} + {x.completion_tokens} tokens")
    if x.neurons is not None:
        parts.append(f"{'~' if x.neurons_estimated else ''}{x.neurons:,.2f} neurons")
    parts.append(f"{x.duration_ms:.0f} ms" if x.duration_ms < 1000 else f"{x.duration_ms / 1000:.1f} s")
    term.heading(" · ".join(parts))
    if x.system:
        term.line(f"system: {printable(_one_line(x.system), 400)}")
    if x.attachments:
        term.line("attached: " + ", ".join(printable(f"{a.get('name')} ({a.get('kind')})") for a in x.attachments))
    for line in (x.prompt or "(no text)").splitlines() or [""]:
        term.line(f"> {printable(line, 100_000)}")
    term.line("")
    if x.answer:
        term.markdown(x.answer)
    for call in x.tool_calls:
        term.tool_call(str(call.get("name")), str(call.get("arguments")))
    term.line("")


def _one_line(text: str, width: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width].rstrip() + "…"


@logs_app.command("path", epilog="Example:\n\n  sqlite3 \"$(cfai logs path)\" .schema")
def path(invocation: typer.Context) -> None:
    """Print where the exchange log is (logs.db in the data directory)."""
    from cfai_cli.cli.render import Terminal

    Terminal(options=invocation.obj).line(str(locations().log_file))


@logs_app.command("on", epilog="Example:\n\n  cfai logs on")
def turn_on(invocation: typer.Context) -> None:
    """Log every exchange again: removes `log = false` from config.toml."""
    _switch(invocation, on=True)


@logs_app.command("off", epilog="Example:\n\n  cfai logs off")
def turn_off(invocation: typer.Context) -> None:
    """Stop logging exchanges: writes `log = false` to config.toml (what is logged stays; CFAI_LOG wins)."""
    _switch(invocation, on=False)


def _switch(invocation: typer.Context, *, on: bool) -> None:
    from cfai_cli.cli.render import Terminal
    from cfai_cli.settings import set_config_value

    set_config_value(locations().config_file, "log", None if on else "false")
    term = Terminal(options=invocation.obj)
    term.line(f"exchange logging is {'on' if on else 'off'}")
    _environment_note(term)


def _environment_note(term: Terminal) -> None:
    import os

    if os.environ.get("CFAI_LOG"):
        term.warn(f"CFAI_LOG={os.environ['CFAI_LOG']} is set and wins over the config file.")


@logs_app.command("status", epilog="Example:\n\n  cfai logs status --json")
def status(invocation: typer.Context, json_out: JsonOption = False) -> None:
    """Say whether exchanges are logged (and why), where, and how many there are."""
    from cfai_cli.cli.common import settings_from_flags
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.exchanges import ExchangeLog

    settings = settings_from_flags()
    file = settings.log_file
    exchanges, conversations = ExchangeLog(file).counts()
    info: dict[str, Any] = {"logging": settings.log, "source": settings.origins.get("log", "default"),
                            "path": str(file), "exchanges": exchanges, "conversations": conversations,
                            "bytes": file.stat().st_size if file.exists() else 0,
                            "max_rows": settings.log_max_rows, "retention_days": settings.log_retention_days}
    term = Terminal(options=invocation.obj)
    if json_out:
        term.json(info)
        return
    term.line(f"logging: {'on' if settings.log else 'off'} ({info['source']})")
    term.line(f"file: {file}")
    term.line(f"{exchanges} exchanges in {conversations} conversations, {info['bytes'] / 1024:,.0f} KB")
    term.line(f"kept: the newest {settings.log_max_rows or 'all'} exchanges"
              + (f", for {settings.log_retention_days} days" if settings.log_retention_days else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(logs_app)
