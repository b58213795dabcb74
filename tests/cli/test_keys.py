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
    assert piped[0].split("\t") == ["id", "name", "hint", "created", "revoked", "policy"]
    assert piped[1].split("\t")[:3] == [entry["id"], "ci", entry["hint"]]


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


def test_keygen_policy_flags_show_and_list(cli: Invoke) -> None:
    made = cli("keygen", "--name", "ci", "--rpm", "60", "--rpd", "1000", "--tpm", "5000", "--models",
               "gpt-4o-mini, @cf/meta/*", "--scopes", "chat,models", "--expires", "30d")
    assert made.exit_code == 0, made.stderr
    key = made.stdout.strip()
    record = KeyStore(load_settings().database).verify(key)
    assert record is not None
    policy = record.policy
    assert (policy.rpm, policy.rpd, policy.tpm) == (60, 1000, 5000)
    assert policy.models == ("gpt-4o-mini", "@cf/meta/*") and policy.scopes == {"chat", "models"}
    assert policy.expires_at is not None and 29 * 86400 < policy.expires_at - record.created_at <= 30 * 86400
    shown = json.loads(cli("keys", "show", record.id, "--json").stdout)
    assert shown["rpm"] == 60 and shown["scopes"] == ["chat", "models"] and "key" not in shown
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert [k["id"] for k in listed] == [record.id]
    admin = cli("keygen", "--scopes", "all").stdout.strip()
    admin_record = KeyStore(load_settings().database).verify(admin)
    assert admin_record is not None and "admin" in admin_record.policy.scopes


def test_rotate_replaces_the_key_and_keeps_the_policy(cli: Invoke) -> None:
    old = cli("keygen", "--name", "svc", "--rpm", "7").stdout.strip()
    store = KeyStore(load_settings().database)
    old_record = store.verify(old)
    assert old_record is not None
    rotated = cli("keys", "rotate", old_record.id)
    assert rotated.exit_code == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert re.fullmatch(r"sk-proj-[A-Za-z0-9_-]{43,}", new) and new != old
    assert store.verify(old) is None
    new_record = store.verify(new)
    assert new_record is not None and new_record.name == "svc" and new_record.policy.rpm == 7
    assert cli("keys", "rotate", old_record.id).exit_code == 4  # the old one is no longer active


def test_bad_policy_flags(cli: Invoke) -> None:
    assert cli("keygen", "--expires", "soon").exit_code == 2
    assert cli("keygen", "--rpm", "0").exit_code == 2
    bad_scope = cli("keygen", "--scopes", "chat,root")
    assert bad_scope.exit_code == 3 and "root" in bad_scope.stderr
    assert cli("keys", "show", "key_missing").exit_code == 4


def test_keys_set_changes_a_live_keys_policy(cli: Invoke) -> None:
    key = cli("keygen", "--name", "svc", "--rpm", "7", "--expires", "1d").stdout.strip()
    store = KeyStore(load_settings().database)
    record = store.verify(key)
    assert record is not None
    changed = cli("keys", "set", record.id, "--name", "renamed", "--models", "@cf/meta/*, gpt-4o-mini", "--tpm",
                  "500", "--scopes", "chat", "--cache", "--json")
    assert changed.exit_code == 0, changed.stderr
    shown = json.loads(changed.stdout)
    assert (shown["name"], shown["models"], shown["tpm"], shown["rpm"]) == ("renamed", ["@cf/meta/*", "gpt-4o-mini"],
                                                                          500, 7)
    assert shown["scopes"] == ["chat"] and shown["cache"] is True and key not in changed.stdout
    after = store.verify(key)  # the same secret, the new policy
    assert after is not None and after.policy.tpm == 500 and after.policy.models == ("@cf/meta/*", "gpt-4o-mini")
    reset = json.loads(cli("keys", "set", record.id, "--unset", "rpm,models,expires,scopes", "--no-cache",
                           "--json").stdout)
    assert reset["rpm"] is None and reset["models"] == [] and reset["expires_at"] is None and reset["cache"] is False
    assert "admin" not in reset["scopes"] and "embeddings" in reset["scopes"] and reset["tpm"] == 500
    assert cli("keys", "set", record.id).exit_code == 2  # nothing to change
    assert cli("keys", "set", record.id, "--unset", "colour").exit_code == 2
    assert cli("keys", "set", record.id, "--rpm", "5", "--unset", "rpm").exit_code == 2
    assert cli("keys", "set", record.id, "--expires", "soon").exit_code == 2
    bad = cli("keys", "set", record.id, "--scopes", "root")
    assert bad.exit_code == 4 and "scopes" in bad.stderr
    assert cli("keys", "set", "key_missing", "--rpm", "3").exit_code == 4
    cli("keys", "revoke", record.id)
    revoked = cli("keys", "set", record.id, "--rpm", "3")
    assert revoked.exit_code == 4 and "revoked" in revoked.stderr


def test_the_cli_may_revoke_the_last_admin_key(cli: Invoke) -> None:
    """Only HTTP keeps the last admin key: from the host's shell another can always be minted."""
    key = cli("keygen", "--scopes", "all").stdout.strip()
    record = KeyStore(load_settings().database).verify(key)
    assert record is not None
    assert cli("keys", "revoke", record.id).exit_code == 0


def test_budgets_on_keygen_and_keys_set(cli: Invoke) -> None:
    made = cli("keygen", "--name", "intern", "--budget-neurons-per-day", "2000", "--budget-usd-per-month", "5")
    assert made.exit_code == 0, made.stderr
    assert "budget 2,000 neurons/day" in made.stderr and "budget $5/month" in made.stderr
    record = KeyStore(load_settings().database).verify(made.stdout.strip())
    assert record is not None
    assert (record.policy.budget_neurons_per_day, record.policy.budget_usd_per_month) == (2000, 5)
    changed = json.loads(cli("keys", "set", record.id, "--budget-neurons-per-day", "500.5", "--json").stdout)
    assert (changed["budget_neurons_per_day"], changed["budget_usd_per_month"]) == (500.5, 5)
    unset = json.loads(cli("keys", "set", record.id, "--unset", "budget-usd-per-month", "--json").stdout)
    assert (unset["budget_neurons_per_day"], unset["budget_usd_per_month"]) == (500.5, None)
    assert cli("keygen", "--budget-neurons-per-day", "0").exit_code == 2
    assert cli("keys", "set", record.id, "--budget-usd-per-month", "-1").exit_code == 2


def test_keys_commands_take_a_name(cli: Invoke) -> None:
    cli("keygen", "--name", "laptop")
    first = json.loads(cli("keys", "show", "laptop", "--json").stdout)
    assert first["name"] == "laptop" and first["id"].startswith("key_")
    assert json.loads(cli("keys", "set", "laptop", "--rpm", "7", "--json").stdout)["rpm"] == 7
    rotated = cli("keys", "rotate", "laptop")
    assert rotated.exit_code == 0 and first["id"] in rotated.stderr
    # The revoked predecessor keeps the name: the active key is the one meant.
    second = json.loads(cli("keys", "show", "laptop", "--json").stdout)
    assert second["id"] != first["id"] and second["rpm"] == 7 and second["active"]
    revoked = cli("keys", "revoke", "laptop")
    assert revoked.exit_code == 0 and second["id"] in revoked.stderr
    # Now neither is active and both are named laptop: which one is meant is not guessed.
    ambiguous = cli("keys", "show", "laptop")
    assert ambiguous.exit_code == 4 and ambiguous.stdout == ""
    (line,) = ambiguous.stderr.splitlines()
    assert line.startswith("cfai: 2 keys are named 'laptop'") and first["id"] in line and second["id"] in line
    missing = cli("keys", "revoke", "desktop")
    assert missing.exit_code == 4 and missing.stderr.startswith("cfai: No key with id or name 'desktop'")
    assert cli("keys", "show", first["id"]).exit_code == 0  # an id always works
