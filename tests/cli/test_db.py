"""`cfai db status|migrate|export|import`: the schema version, and moving a gateway between SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cfai_cli.errors import ExitCode
from cfai_cli.store.keys import KeyStore
from cfai_cli.store.migrations import LATEST
from cfai_cli.store.sql import forget, open_database
from tests.cli.conftest import Invoke
from tests.infra.servers import PostgresServer


def test_status_and_migrate_of_a_new_sqlite_file(cli: Invoke, tmp_path: Path) -> None:
    db = tmp_path / "cfai.db"
    before = json.loads(cli("db", "status", "--json").stdout)
    assert before["engine"] == "sqlite" and before["version"] == 0 and before["latest"] == LATEST
    assert before["pending"][0].startswith("1: baseline")
    dry = cli("db", "migrate", "--dry-run")
    assert dry.exit_code == 0 and "would apply 1: baseline" in dry.stdout and not db.exists()
    done = cli("db", "migrate")
    assert "applied 1: baseline" in done.stdout
    assert json.loads(cli("db", "status", "--json").stdout)["version"] == LATEST
    assert "up to date" in cli("db", "migrate").stdout


def _fill(target: Path) -> None:
    store = KeyStore(target)
    store.create("laptop")
    store.create("ci")
    with store.db.transaction(write=True) as tx:
        tx.execute("INSERT INTO usage_log (ts, key_id, route, status, latency_ms, neurons) VALUES (?, ?, ?, ?, ?, ?)",
                   (1700000000.25, "key_x", "/v1/chat/completions", 200, 12.5, 0.1 + 0.2))
        tx.execute("INSERT INTO response_cache (key, tenant, kind, model, created_at, expires_at, size, body) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ("k1", "t", "chat", None, 1.0, 2.0, 3, b"\x00\xffbody"))
        tx.execute("INSERT INTO cli_state (key, value) VALUES (?, ?)", ("last", "resp_1 % ? 'quoted'"))


def test_export_import_round_trip_sqlite_postgres_sqlite(cli: Invoke, tmp_path: Path,
                                                         postgres_server: PostgresServer) -> None:
    source = tmp_path / "a" / "cfai.db"
    _fill(source)
    first = cli("db", "export", "--database", str(source))
    assert first.exit_code == 0
    lines = first.stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["table"] for r in rows] == ["api_keys", "api_keys", "usage_log", "cli_state", "response_cache"]
    assert rows[-1]["row"]["body"] == {"base64": "AP9ib2R5"}
    dump = tmp_path / "dump.jsonl"
    dump.write_text(first.stdout)

    url = postgres_server.create_database(f"roundtrip_{os.getpid()}")
    try:
        loaded = cli("db", "import", str(dump), "--database", url, "--json")
        assert json.loads(loaded.stdout)["api_keys"] == 2
        assert cli("db", "export", "--database", url).stdout == first.stdout  # the same text from PostgreSQL
        with open_database(url).transaction() as tx:  # bytes are bytes, floats kept exactly
            assert tx.execute("SELECT body FROM response_cache").fetchone()[0] == b"\x00\xffbody"
            assert tx.execute("SELECT neurons FROM usage_log").fetchone()[0] == 0.1 + 0.2
        again = cli("db", "import", str(dump), "--database", url)
        assert again.exit_code == ExitCode.CONFIG and "already holds 5 rows" in again.stderr
        assert cli("db", "import", str(dump), "--database", url, "--force").exit_code == 0
        back = tmp_path / "b" / "cfai.db"
        (tmp_path / "pg.jsonl").write_text(cli("db", "export", "--database", url).stdout)
        assert cli("db", "import", str(tmp_path / "pg.jsonl"), "--database", str(back)).exit_code == 0
        assert cli("db", "export", "--database", str(back)).stdout == first.stdout
        # and the keys are the same there: ids, names (and hashes: the export text is the same)
        assert {k.name: k.id for k in KeyStore(back).list()} == \
            {r["row"]["name"]: r["row"]["id"] for r in rows if r["table"] == "api_keys"}
    finally:
        forget(url)


def test_import_refuses_lines_that_are_not_an_export(cli: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"table": "api_keys", "row": {"id": "k", "name) VALUES (1); DROP TABLE x; --": 1}}\n')
    result = cli("db", "import", str(bad), "--database", str(tmp_path / "x.db"))
    assert result.exit_code == ExitCode.CONFIG and "Line 1 of the import is not an export line" in result.stderr


def test_key_and_usage_commands_use_the_configured_store(cli: Invoke, cfai_home: Path,
                                                          postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database(f"keys_cli_{os.getpid()}")
    try:
        made = cli("keygen", "--name", "shared", env={"CFAI_STORE_URL": url})
        assert made.exit_code == 0 and "127.0.0.1" in made.stderr  # "only its hash is stored, in host:port/db"
        assert KeyStore(url).verify(made.stdout.strip()) is not None
        assert not (cfai_home / "cfai.db").exists()  # nothing went to the SQLite file
        (cfai_home / "config.toml").write_text(f'[store]\nurl = "{url}"\n')  # the same, from the config file
        listed = json.loads(cli("keys", "list", "--json").stdout)
        assert [k["name"] for k in listed] == ["shared"]
        assert cli("usage", "--json").exit_code == 0
        (cfai_home / "config.toml").write_text('[store]\nurl = "mysql://x@y/z"\n')
        refused = cli("keys", "list")
        assert refused.exit_code == ExitCode.CONFIG and "store.url" in refused.stderr
    finally:
        forget(url)
