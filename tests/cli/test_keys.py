"""`cfai keygen` and `cfai keys`: the key alone on stdout, only its hash on disk, revocation."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cfai_cli.settings import load_settings
from cfai_cli.store.keys import KeyStore
from tests.cli.conftest import Invoke


def data_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


def test_keygen_prints_only_the_key(cli: Invoke, cfai_home: Path) -> None:
    result = cli("keygen", "--name", "laptop")
    assert result.exit_code == 0
    assert re.fullmatch(r"sk-proj-[A-Za-z0-9_-]{43,}\n", result.stdout)
    key = result.stdout.strip()
    assert "laptop" in result.stderr and "only time" in result.stderr
    assert key not in result.stderr
    assert key.encode() not in data_bytes(cfai_home)
    record = KeyStore(load_settings().database).verify(key)
    assert record is not None and record.name == "laptop"


def test_keys_are_different_each_time(cli: Invoke) -> None:
    assert cli("keygen").stdout != cli("keygen").stdout


def test_list_shows_hints_never_keys(cli: Invoke) -> None:
    key = cli("keygen", "--name", "ci").stdout.strip()
    result = cli("keys", "list", "--json")
    assert result.exit_code == 0
    (entry,) = json.loads(result.stdout)
    assert entry["name"] == "ci" and entry["id"].startswith("key_") and entry["revoked_at"] is None
    assert entry["hint"].startswith("sk-proj-") and key not in result.stdout
    piped = cli("keys", "list").stdout.splitlines()
    assert piped[0].split("\t")[:3] == [entry["id"], "ci", entry["hint"]]


def test_revoke(cli: Invoke) -> None:
    key = cli("keygen").stdout.strip()
    (entry,) = json.loads(cli("keys", "list", "--json").stdout)
    result = cli("keys", "revoke", entry["id"])
    assert result.exit_code == 0 and result.stdout == ""
    assert KeyStore(load_settings().database).verify(key) is None
    assert json.loads(cli("keys", "list", "--json").stdout)[0]["revoked_at"] is not None
    again = cli("keys", "revoke", entry["id"])
    assert again.exit_code == 4
    assert again.stderr.startswith("cfai: No active key")
