"""`cfai keygen` and `cfai keys list|revoke`: the API keys that clients of `cfai serve` must present.

Imports typer, store and errors (stdlib-only modules) and cli.render inside commands. A key is printed once,
alone on stdout so `KEY=$(cfai keygen)` works; only its SHA-256 hash is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from cfai_cli.cli.common import JsonOption, locations

KEYGEN_HELP = """Mint an API key for clients of `cfai serve` and print it (only the key) on stdout.

The key is shown once: cfai stores only a hash of it in cfai.db under the data directory. Details (id, name,
where it is stored) go to stderr.
"""

KEYGEN_EPILOG = """Examples:

  KEY=$(cfai keygen --name laptop)

  OPENAI_API_KEY=$(cfai keygen) python my_app.py
"""

keys_app = typer.Typer(
    name="keys", no_args_is_help=True,
    help="List and revoke the API keys minted by `cfai keygen` (the keys themselves are never stored).",
    epilog="Examples:\n\n  cfai keys list\n\n  cfai keys revoke key_0123456789abcdef",
)


def keygen(name: Annotated[str, typer.Option("--name", help="A label to recognise the key by later.")] = "default"
           ) -> None:
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.keys import KeyStore

    term = Terminal()
    database = locations().database
    key, record = KeyStore(database).create(name)
    term.line(key)
    term.note(f"Created API key {record.id} ({record.name!r}); only its hash is stored, in {database}.")
    term.note("This is the only time the key is shown. Revoke it with `cfai keys revoke " + record.id + "`.")


def _when(stamp: int | None) -> str:
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M") if stamp else ""


@keys_app.command("list", epilog="Examples:\n\n  cfai keys list\n\n  cfai keys list --json | jq -r '.[].id'")
def list_keys(json_out: JsonOption = False) -> None:
    """List every key: id, name, a hint of its first and last characters, when made and revoked."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.keys import KeyStore

    term = Terminal()
    records = KeyStore(locations().database).list()
    if json_out:
        term.json([{"id": r.id, "name": r.name, "hint": r.hint, "created_at": r.created_at,
                    "revoked_at": r.revoked_at} for r in records])
        return
    if not records:
        term.note("no keys yet: make one with `cfai keygen`")
        return
    term.table(["id", "name", "hint", "created", "revoked"],
               [[r.id, r.name, r.hint, _when(r.created_at), _when(r.revoked_at) or "-"] for r in records])


@keys_app.command("revoke", epilog="Example:\n\n  cfai keys revoke key_0123456789abcdef")
def revoke(key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id, from `cfai keys list`.",
                                                 show_default=False)]) -> None:
    """Revoke a key at once, also for a server that is already running."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.errors import NotFound
    from cfai_cli.store.keys import KeyStore

    if not KeyStore(locations().database).revoke(key_id):
        raise NotFound(f"No active key with id {key_id!r} (see `cfai keys list`).")
    Terminal().note(f"Revoked {key_id}.")


def register(app: typer.Typer) -> None:
    app.command("keygen", help=KEYGEN_HELP, epilog=KEYGEN_EPILOG)(keygen)
    app.add_typer(keys_app)
