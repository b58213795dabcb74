"""`cfai keygen` and `cfai keys list|show|set|rotate|revoke`: the API keys that clients of `cfai serve` must present.

Imports typer, store and errors (stdlib-only modules) and cli.render inside commands. A key is printed once,
alone on stdout so `KEY=$(cfai keygen)` works; only its SHA-256 hash is stored. The operations are
service.admin's, which the /v1/admin routes run too.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cfai_cli.cli.common import JsonOption, storage

if TYPE_CHECKING:
    from cfai_cli.store.keys import KeyRecord

KEYGEN_HELP = """Mint an API key for clients of `cfai serve` and print it (only the key) on stdout.

The key is shown once: cfai stores only a hash of it in cfai.db under the data directory. Details (id, name,
where it is stored) go to stderr.
"""

KEYGEN_EPILOG = """Examples:

  KEY=$(cfai keygen --name laptop)

  KEY=$(cfai keygen --name ci --rpm 60 --models 'gpt-4o-mini,@cf/meta/*' --scopes chat,models --expires 30d)

  KEY=$(cfai keygen --name intern --budget-neurons-per-day 2000 --budget-usd-per-month 5)

  OPENAI_API_KEY=$(cfai keygen) python my_app.py
"""

# The budget options of `cfai keygen` and `cfai keys set` (docs/cost.md).
BudgetNeuronsOption = Annotated[float | None, typer.Option(
    "--budget-neurons-per-day", min=0.001, show_default=False, metavar="N",
    help="Refuse its requests once it has spent N neurons since 00:00 UTC (docs/cost.md).")]
BudgetUsdOption = Annotated[float | None, typer.Option(
    "--budget-usd-per-month", min=0.000001, show_default=False, metavar="USD",
    help="Refuse its requests once it has spent this many dollars (list price) this calendar month.")]

keys_app = typer.Typer(
    name="keys", no_args_is_help=True,
    help="List, show, change, rotate and revoke the API keys minted by `cfai keygen` (only their hashes are "
         "stored). The same operations are served over HTTP under /v1/admin/keys (docs/admin.md).",
    epilog="Examples:\n\n  cfai keys list\n\n  cfai keys set key_0123456789abcdef --rpm 60\n\n"
           "  cfai keys revoke key_0123456789abcdef\n\n  cfai keys show laptop      # a name works where it is unique",
)


LIMIT_MAX = 10**12  # stored as SQLite INTEGER (64-bit): a bigger --rpm/--rpd/--tpm is a usage error, not a crash


def parse_duration(text: str) -> int:
    """'30d', '12h', '90m', '2w' -> seconds."""
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    value = text.strip().lower()
    if len(value) < 2 or not value[:-1].isdigit() or value[-1] not in units or int(value[:-1]) < 1:
        raise typer.BadParameter(f"{text!r}: use a number and a unit, e.g. 30d, 12h, 90m, 2w.", param_hint="--expires")
    seconds = int(value[:-1]) * units[value[-1]]
    if seconds > 100 * 365 * 86400:
        raise typer.BadParameter(f"{text!r}: at most 100 years; omit --expires for a key that never expires.",
                                 param_hint="--expires")
    return seconds


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def keygen(
    invocation: typer.Context,
    name: Annotated[str, typer.Option("--name", help="A label to recognise the key by later.")] = "default",
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, max=LIMIT_MAX, show_default=False,
                                            help="Requests per minute.")] = None,
    rpd: Annotated[int | None, typer.Option("--rpd", min=1, max=LIMIT_MAX, show_default=False,
                                            help="Requests per day.")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", min=1, max=LIMIT_MAX, show_default=False,
                                            help="Tokens per minute.")] = None,
    models: Annotated[str | None, typer.Option("--models", show_default=False, metavar="PATTERNS",
                                               help="Comma-separated model patterns this key may use, e.g. "
                                                    "'gpt-4o*,@cf/meta/*' (default: any).")] = None,
    scopes: Annotated[str | None, typer.Option("--scopes", show_default=False, metavar="SCOPES",
                                               help="Comma-separated: chat, embeddings, images, audio, models, "
                                                    "admin (default: all but admin; 'all' for every one).")] = None,
    expires: Annotated[str | None, typer.Option("--expires", show_default=False, metavar="DURATION",
                                                help="Expire after e.g. 30d, 12h or 2w.")] = None,
    cache: Annotated[bool, typer.Option("--cache", help="Its requests use the response cache without asking, "
                                        "when [cache] is enabled (see docs/cache.md).")] = False,
    budget_neurons_per_day: BudgetNeuronsOption = None,
    budget_usd_per_month: BudgetUsdOption = None,
) -> None:
    import time

    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.admin import create_key
    from cfai_cli.store.keys import DEFAULT_SCOPES, SCOPES, KeyPolicy, KeyStore

    chosen = _split(scopes)
    policy = KeyPolicy(
        scopes=frozenset(SCOPES) if chosen == ["all"] else (frozenset(chosen) if chosen else DEFAULT_SCOPES),
        models=tuple(_split(models)), rpm=rpm, rpd=rpd, tpm=tpm,
        expires_at=int(time.time()) + parse_duration(expires) if expires else None, cache=cache,
        budget_neurons_per_day=budget_neurons_per_day, budget_usd_per_month=budget_usd_per_month)
    term = Terminal(options=invocation.obj)
    store = KeyStore(storage())
    key, record = create_key(store, name, policy)
    term.line(key)
    term.note(f"Created API key {record.id} ({record.name!r}); only its hash is stored, in {store.db.label}.")
    term.note(f"Policy: {describe(record)}.")
    term.note("This is the only time the key is shown. Revoke it with `cfai keys revoke " + record.id + "`.")


def describe(record: KeyRecord) -> str:
    p = record.policy
    parts = [f"scopes {','.join(sorted(p.scopes))}"]
    if p.models:
        parts.append(f"models {','.join(p.models)}")
    parts += [f"{n} {getattr(p, n)}" for n in ("rpm", "rpd", "tpm") if getattr(p, n) is not None]
    if p.expires_at:
        parts.append(f"expires {_when(p.expires_at)}")
    if p.cache:
        parts.append("response cache")
    if p.budget_neurons_per_day is not None:
        parts.append(f"budget {p.budget_neurons_per_day:,g} neurons/day")
    if p.budget_usd_per_month is not None:
        parts.append(f"budget ${p.budget_usd_per_month:,g}/month")
    return "; ".join(parts)


def _when(stamp: int | None) -> str:
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M") if stamp else ""


@keys_app.command("list", epilog="Examples:\n\n  cfai keys list\n\n  cfai keys list --json | jq -r '.[].id'")
def list_keys(invocation: typer.Context, json_out: JsonOption = False) -> None:
    """List every key: id, name, a hint of its first and last characters, when made and revoked."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.admin import key_view
    from cfai_cli.store.keys import KeyStore

    term = Terminal(options=invocation.obj)
    records = KeyStore(storage()).list()
    if json_out:
        term.json([key_view(r) for r in records])
        return
    if not records:
        term.note("no keys yet: make one with `cfai keygen`")
        return
    term.table(["id", "name", "hint", "created", "revoked", "policy"],
               [[r.id, r.name, r.hint, _when(r.created_at), _when(r.revoked_at) or "-", describe(r)]
                for r in records])


@keys_app.command("show", epilog="Example:\n\n  cfai keys show key_0123456789abcdef --json")
def show(invocation: typer.Context,
         key_id: Annotated[str, typer.Argument(metavar="ID|NAME", help="The key's id or name, from `cfai keys list`.",
                                               show_default=False)], json_out: JsonOption = False) -> None:
    """Show one key's policy (scopes, models, limits, expiry) and state."""
    from cfai_cli.service.admin import find_key
    from cfai_cli.store.keys import KeyStore

    _show(invocation, find_key(KeyStore(storage()), key_id), json_out)


def _show(invocation: typer.Context, record: KeyRecord, json_out: bool) -> None:
    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.admin import key_view

    term = Terminal(options=invocation.obj)
    if json_out:
        term.json(key_view(record))
    else:
        term.table(["field", "value"], [[k, str(v)] for k, v in key_view(record).items()])


@keys_app.command("rotate", epilog="Example:\n\n  NEW=$(cfai keys rotate key_0123456789abcdef)")
def rotate(invocation: typer.Context,
           key_id: Annotated[str, typer.Argument(metavar="ID|NAME", help="The key's id or name, from `cfai keys list`.",
                                                 show_default=False)]) -> None:
    """Replace a key: a new key with the same name and policy is printed on stdout; the old one is revoked."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.admin import find_key, rotate_key
    from cfai_cli.store.keys import KeyStore

    store = KeyStore(storage())
    key_id = find_key(store, key_id).id
    key, record = rotate_key(store, key_id)
    term = Terminal(options=invocation.obj)
    term.line(key)
    term.note(f"Rotated {key_id} -> {record.id}; the old key no longer works. This is the only time the new "
              "key is shown.")


@keys_app.command("revoke", epilog="Example:\n\n  cfai keys revoke key_0123456789abcdef")
def revoke(invocation: typer.Context,
           key_id: Annotated[str, typer.Argument(metavar="ID|NAME", help="The key's id or name, from `cfai keys list`.",
                                                 show_default=False)]) -> None:
    """Revoke a key at once, also for a server that is already running."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.service.admin import find_key, revoke_key
    from cfai_cli.store.keys import KeyStore

    store = KeyStore(storage())
    record = find_key(store, key_id)
    revoke_key(store, record.id)  # from the host's shell, even the last admin key
    Terminal(options=invocation.obj).note(f"Revoked {record.id} ({record.name}).")


UNSETTABLE = ("scopes", "models", "rpm", "rpd", "tpm", "expires", "budget-neurons-per-day", "budget-usd-per-month")


@keys_app.command("set", epilog="Examples:\n\n  cfai keys set key_0123456789abcdef --rpm 120 --models '@cf/meta/*'\n\n"
                                "  cfai keys set key_0123456789abcdef --unset rpm,expires --json")
def set_policy(
    invocation: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID|NAME", help="The key's id or name, from `cfai keys list`.",
                                          show_default=False)],
    name: Annotated[str | None, typer.Option("--name", show_default=False, help="A new label.")] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, show_default=False, help="Requests per minute.")] = None,
    rpd: Annotated[int | None, typer.Option("--rpd", min=1, show_default=False, help="Requests per day.")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", min=1, show_default=False, help="Tokens per minute.")] = None,
    models: Annotated[str | None, typer.Option("--models", show_default=False, metavar="PATTERNS",
                                               help="Comma-separated model patterns (replaces the list).")] = None,
    scopes: Annotated[str | None, typer.Option("--scopes", show_default=False, metavar="SCOPES",
                                               help="Comma-separated scopes (replaces them; 'all' for every one).")
                      ] = None,
    expires: Annotated[str | None, typer.Option("--expires", show_default=False, metavar="DURATION",
                                                help="Expire this long from now, e.g. 30d, 12h or 2w.")] = None,
    cache: Annotated[bool | None, typer.Option("--cache/--no-cache", show_default=False,
                                               help="Use the response cache without asking, or stop.")] = None,
    budget_neurons_per_day: BudgetNeuronsOption = None,
    budget_usd_per_month: BudgetUsdOption = None,
    unset: Annotated[str | None, typer.Option("--unset", show_default=False, metavar="FIELDS",
                                              help="Comma-separated fields back to their default: scopes, models, "
                                                   "rpm, rpd, tpm, expires, budget-neurons-per-day, "
                                                   "budget-usd-per-month.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Change a live key's policy (what `PATCH /v1/admin/keys/{id}` changes); its secret stays the same.

    Only the options given change; the change applies at once, also in a running server.
    """
    from cfai_cli.core.admin import KeyUpdate, refuse_unknown
    from cfai_cli.core.openai.base import validate_request
    from cfai_cli.service.admin import find_key, update_key
    from cfai_cli.store.keys import KeyStore

    changes: dict[str, object] = {"name": name, "scopes": _split(scopes) if scopes is not None else None,
                                  "models": _split(models) if models is not None else None, "rpm": rpm,
                                  "rpd": rpd, "tpm": tpm, "expires_in": expires, "cache": cache,
                                  "budget_neurons_per_day": budget_neurons_per_day,
                                  "budget_usd_per_month": budget_usd_per_month}
    body = {k: v for k, v in changes.items() if v is not None}
    for field in _split(unset):
        if field not in UNSETTABLE:
            raise typer.BadParameter(f"{field!r}: choose from {', '.join(UNSETTABLE)}", param_hint="--unset")
        target = "expires_at" if field == "expires" else field.replace("-", "_")
        if target in body or (field == "expires" and "expires_in" in body):
            raise typer.BadParameter(f"{field!r} is both set and unset", param_hint="--unset")
        body[target] = None
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option", param_hint="--name ... --unset")
    if expires is not None:
        parse_duration(expires)  # keygen's message for a bad duration
    refuse_unknown(KeyUpdate, body)
    store = KeyStore(storage())
    record = update_key(store, find_key(store, key_id).id, validate_request(KeyUpdate, body))
    _show(invocation, record, json_out)


def register(app: typer.Typer) -> None:
    app.command("keygen", help=KEYGEN_HELP, epilog=KEYGEN_EPILOG)(keygen)
    app.add_typer(keys_app)
