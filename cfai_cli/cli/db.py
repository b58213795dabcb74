"""`cfai db status|migrate|export|import`: the database of keys, usage, responses... (`[store]`; docs/database.md).

Imports typer and cli.common at the top; the stores and render inside the commands. Every store-touching
command migrates the database on first use anyway; these commands show and do it on purpose (`--dry-run`
lists what would run), and move a gateway's data between SQLite and PostgreSQL as JSON lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cfai_cli.cli.common import JsonOption, storage

if TYPE_CHECKING:
    from cfai_cli.store.sql import Database

db_app = typer.Typer(
    name="db", no_args_is_help=True,
    help="The database of keys, usage, responses, files and batches ([store] url in config.toml, else cfai.db; "
         "see docs/database.md): its schema version, migrations, export and import.",
    epilog="Examples:\n\n  cfai db status\n\n  cfai db migrate --dry-run\n\n  cfai db export > gateway.jsonl\n\n"
           "  CFAI_STORE_URL=postgresql://cfai@db/gateway cfai db import gateway.jsonl",
)
DatabaseOption = Annotated[str | None, typer.Option(
    "--database", metavar="PATH|URL", show_default=False,
    help="A cfai.db file or a postgresql:// URL instead of the configured store.")]


def _database(target: str | None) -> Database:
    from cfai_cli.core.store_url import check_store_url
    from cfai_cli.store.sql import is_postgres_url, open_database

    if target is None:
        return open_database(storage())
    if is_postgres_url(target):
        try:
            return open_database(check_store_url(target))
        except ValueError as exc:
            raise typer.BadParameter(f"the URL {exc}", param_hint="--database") from None
    path = Path(target).expanduser()
    if not path.name or path.is_dir() or "\0" in target:
        raise typer.BadParameter("not a database file (a cfai.db path or a postgresql:// URL)",
                                 param_hint="--database")
    return open_database(path)


@db_app.command("status")
def status(invocation: typer.Context, database: DatabaseOption = None, json_out: JsonOption = False) -> None:
    """Which database, its schema version, and the migrations this cfai would apply to it."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.migrations import LATEST, pending, recorded

    db = _database(database)
    version = recorded(db)
    todo = pending(version)
    names = [f"{m.version}: {m.name}" for m in todo]
    report = {"database": db.label, "engine": db.engine, "version": version, "latest": LATEST,
              "pending": names, "newer_than_cfai": version > LATEST}
    term = Terminal(options=invocation.obj)
    if json_out:
        term.json(report)
        return
    term.line(f"{db.engine} {db.label}: schema {version} (this cfai: {LATEST})")
    for name in names:
        term.line(f"  pending {name}")
    if version > LATEST:
        term.warn(f"database schema {version} is newer than this cfai ({LATEST}); upgrade cfai")


@db_app.command("migrate")
def migrate(
    invocation: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the migrations that would run; change "
                                                           "nothing.")] = False,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Bring the database's schema up to this cfai's (each migration in its own transaction, once)."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.migrations import LATEST, newer, pending, recorded

    db = _database(database)
    version = recorded(db)
    if version > LATEST:
        raise newer(version)
    todo = pending(version)
    if not dry_run and todo:
        with db.transaction():  # the first use of a database in a process migrates it (store.sql)
            pass
    names = [f"{m.version}: {m.name}" for m in todo]
    term = Terminal(options=invocation.obj)
    if json_out:
        term.json({"database": db.label, "dry_run": dry_run, "from": version, "to": LATEST, "migrations": names})
        return
    if not todo:
        term.line(f"{db.label}: up to date (schema {version})")
    for name in names:
        term.line(f"{'would apply' if dry_run else 'applied'} {name}")


@db_app.command("export")
def export(
    invocation: typer.Context,
    to: Annotated[Path | None, typer.Argument(metavar="[FILE]", show_default=False,
                                              help="Where to write the JSON lines (default: standard output).")] = None,
    database: DatabaseOption = None,
) -> None:
    """Every row of the shared tables as JSON lines (one per row, ordered; bytes base64), for `cfai db import`."""
    from cfai_cli.cli.render import Terminal
    from cfai_cli.store.dump import export_lines

    db = _database(database)
    term = Terminal(options=invocation.obj)
    if to is None:
        for line in export_lines(db):
            term.write(line + "\n")
        return
    import os

    from cfai_cli.errors import ConfigError

    try:  # keys' hashes and usage: readable by the owner only
        fd = os.open(to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot write {to}: {getattr(exc, 'strerror', None) or exc}.") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for line in export_lines(db):  # streamed: a large usage log is never held whole
            out.write(line + "\n")
    term.note(f"Exported {db.label} to {to}.")


@db_app.command("import")
def import_(
    invocation: typer.Context,
    source: Annotated[Path, typer.Argument(metavar="FILE", help="A `cfai db export` file ('-': standard input).")],
    force: Annotated[bool, typer.Option("--force", help="Replace the rows of a database that is not "
                                                        "empty.")] = False,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Load an export into the database (refused if it holds rows, unless --force), in one transaction."""
    import sys

    from cfai_cli.cli.render import Terminal
    from cfai_cli.errors import ConfigError
    from cfai_cli.store.dump import import_lines

    db = _database(database)
    try:
        stream = sys.stdin if str(source) == "-" else source.open(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read {source}: {getattr(exc, 'strerror', None) or exc}.") from None
    with stream:
        try:
            counts = import_lines(db, stream, force=force)
        except UnicodeDecodeError:
            raise ConfigError(f"{source} is not UTF-8 text: not a `cfai db export` file.") from None
    term = Terminal(options=invocation.obj)
    if json_out:
        term.json(counts)
        return
    term.line(f"imported {sum(counts.values())} rows into {db.label}: "
              + ", ".join(f"{table} {n}" for table, n in counts.items() if n))


def register(app: typer.Typer) -> None:
    app.add_typer(db_app)
