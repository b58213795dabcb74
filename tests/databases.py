"""`database`: a store test runs on both engines, the SQLite file and a fresh PostgreSQL database (every test dir)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfai_cli.store.sql import Database, PostgresDatabase, SqliteDatabase, forget

_NAMES = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """A store target: a cfai.db path (not created yet), or the URL of an empty PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "data" / "cfai.db"
        return
    server = request.getfixturevalue("postgres_server")
    url: str = server.create_database(f"store_{os.getpid()}_{next(_NAMES)}")
    try:
        yield url
    finally:
        forget(url)


def another(target: Path | str) -> Database:
    """A second, separate handle on the same database (its own pool): another process or replica."""
    return SqliteDatabase(target) if isinstance(target, Path) else PostgresDatabase(target)
