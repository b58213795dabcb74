"""`cfai usage`: summaries of the usage log by key, model, day and route."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from cfai_cli.settings import load_settings
from cfai_cli.store.usage import UsageLog, UsageRow, parse_since
from tests.cli.conftest import Invoke


def row(*, key: str | None, model: str, status: int, latency: float, age: float = 60) -> UsageRow:
    return UsageRow(ts=time.time() - age, key_id=key, route="chat/completions", model="gpt-4o", upstream_model=model,
                    status=status, prompt_tokens=10, completion_tokens=5, latency_ms=latency, bytes_in=100,
                    bytes_out=200, error_code=None if status < 400 else "oops")


def test_usage_groups_and_filters(cli: Invoke) -> None:
    UsageLog(load_settings().database).write(
        [row(key="key_a", model="m1", status=200, latency=float(ms)) for ms in range(1, 101)]
        + [row(key="key_b", model="m2", status=502, latency=900.0)]
        + [row(key="key_a", model="m1", status=200, latency=5.0, age=30 * 86400)])  # outside --since 7d
    by_model = {r["group"]: r for r in json.loads(cli("usage", "--json").stdout)["groups"]}
    assert by_model["m1"]["requests"] == 100 and by_model["m1"]["prompt_tokens"] == 1000
    assert by_model["m1"]["p50_ms"] == 51.0 and by_model["m1"]["p95_ms"] == 95.0
    assert by_model["m2"]["errors"] == 1
    by_key = {r["group"]: r["requests"] for r in json.loads(cli("usage", "--by", "key", "--since", "60d",
                                                                "--json").stdout)["groups"]}
    assert by_key == {"key_a": 101, "key_b": 1}
    table = cli("usage", "--by", "route")
    assert table.exit_code == 0 and "█" not in table.stdout and "·" not in table.stdout
    assert table.stdout.startswith("route\trequests\terrors\tprompt tok\t")
    assert table.stdout.splitlines()[1].startswith("chat/completions\t101\t1\t")


def test_usage_errors_and_empty(cli: Invoke) -> None:
    assert cli("usage", "--by", "colour").exit_code == 2
    assert cli("usage", "--since", "yesterday-ish").exit_code == 2
    empty = cli("usage")
    assert empty.exit_code == 0 and empty.stdout == "" and "no requests" in empty.stderr
    assert abs(parse_since("2d", now=1000000.0) - (1000000.0 - 172800)) < 1e-6


def test_usage_by_upstream_and_an_old_log_without_that_column(cli: Invoke) -> None:
    import sqlite3

    database = load_settings().database
    database.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(database) as conn:  # a log written by a cfai from before routing
        conn.execute("CREATE TABLE usage_log (ts REAL NOT NULL, key_id TEXT, route TEXT NOT NULL, model TEXT, "
                     "upstream_model TEXT, status INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL DEFAULT 0, "
                     "completion_tokens INTEGER NOT NULL DEFAULT 0, latency_ms REAL NOT NULL, "
                     "bytes_in INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0, error_code TEXT)")
        conn.execute("INSERT INTO usage_log VALUES (?, 'k', 'chat/completions', 'gpt-4o', 'm', 200, 1, 1, 5.0, "
                     "1, 1, NULL)", (time.time() - 60,))
    upstreams = ["groq", "backup#2", "backup#2"]
    UsageLog(database).write([replace(row(key="k", model="m", status=200, latency=1.0), upstream=u) for u in upstreams])
    report = json.loads(cli("usage", "--by", "upstream", "--json").stdout)
    by_upstream = {r["group"]: r["requests"] for r in report["groups"]}
    assert by_upstream == {"(none)": 1, "groq": 1, "backup#2": 2}  # the old row kept, its upstream unknown


def test_prune_now(cli: Invoke) -> None:
    from cfai_cli.store.responses import ResponseStore

    database = load_settings().database
    UsageLog(database).write([row(key="k", model="m", status=200, latency=1.0, age=days * 86400)
                              for days in (100, 40, 5, 1)])
    store = ResponseStore(database)
    for rid, days in (("resp_old", 31), ("resp_new", 1)):
        store.save({"id": rid, "created_at": int(time.time() - days * 86400), "output": []}, [])
    pruned = cli("usage", "--prune", "--json")  # the limits from the settings: 90 and 30 days
    assert pruned.exit_code == 0 and json.loads(pruned.stdout) == {"usage_rows": 1, "responses": 1}
    older = cli("usage", "--prune", "--older-than", "3d")
    assert older.exit_code == 0 and older.stdout == "deleted 2 usage rows and 0 stored responses\n"
    assert len(UsageLog(database).rows(since=0)) == 1 and store.get("resp_new") is not None
    set_days = cli("usage", "--prune", "--json", env={"CFAI_USAGE_RETENTION_DAYS": "0"})  # 0: no time limit
    assert json.loads(set_days.stdout) == {"usage_rows": 0, "responses": 0}
    assert cli("usage", "--older-than", "3d").exit_code == 2  # only with --prune
    assert cli("usage", "--prune", "--older-than", "soon").exit_code == 2


def test_names_are_printed_without_terminal_escapes(cli: Invoke) -> None:
    import sqlite3

    database = load_settings().database
    UsageLog(database).write([row(key="k", model="m", status=200, latency=1.0)])  # creates the table
    with sqlite3.connect(database) as conn:  # a row a cfai from before the cleaning stored as it came
        conn.execute("INSERT INTO usage_log VALUES (?, 'k', 'chat/completions', 'x', ?, 200, 1, 1, 5.0, 1, 1, NULL, "
                     "NULL, NULL, NULL, 0, NULL, NULL)",
                     (time.time() - 60, "\x1b]0;pwned\x07evil\x1b[2J\u202emodel\x9b"))
    for args in (("usage",), ("usage", "--json")):
        out = cli(*args).stdout
        assert "evilmodel" in out
        assert not any(c in out for c in ("\x1b", "\x07", "\u202e", "\x9b"))


def test_neurons_cost_and_the_free_allocation_per_account(cli: Invoke) -> None:
    from cfai_cli.core.cost import day_start

    now = time.time()
    today = now - day_start(now)  # seconds since 00:00 UTC: rows older than that are yesterday's
    base = row(key="k", model="m", status=200, latency=1.0)

    def spent(neurons: float, *, estimated: bool = False, account: str = "cloudflare", age: float = 0.0) -> UsageRow:
        return replace(base, ts=now - age, neurons=neurons, neurons_estimated=estimated,
                       cost_usd=neurons * 0.011 / 1000, account=account, upstream=account)

    UsageLog(load_settings().database).write([
        spent(7000.0), spent(340.0, estimated=True), spent(120.5, account="backup"),
        spent(5000.0, age=today + 3600),  # yesterday's: in the totals, not in today's allocation
        replace(base, ts=now - 1)])  # a request with no Workers AI call: no neurons
    report = json.loads(cli("usage", "--by", "upstream", "--json").stdout)
    groups = {g["group"]: g for g in report["groups"]}
    assert groups["cloudflare"]["neurons"] == 12_340.0 and groups["cloudflare"]["estimated_neurons"] == 340.0
    assert abs(groups["cloudflare"]["cost_usd"] - 12_340 * 0.011 / 1000) < 1e-9
    assert groups["backup"]["neurons"] == 120.5 and groups["(none)"]["neurons"] == 0.0
    accounts = {a["account"]: a for a in report["accounts"]}
    assert set(accounts) == {"backup", "cloudflare"}
    assert accounts["cloudflare"]["neurons"] == 7340.0 and accounts["cloudflare"]["estimated_neurons"] == 340.0
    assert accounts["cloudflare"]["free"] == 10_000 and round(accounts["cloudflare"]["percent"]) == 73
    assert 0 < accounts["cloudflare"]["resets_in_s"] <= 86_400
    assert accounts["cloudflare"]["line"].startswith("today: 7,340 of 10,000 free neurons used (73 %), resets in ")
    table = cli("usage", "--by", "upstream").stdout
    assert "~12,340.0" in table and "\t120.5\t" in table  # ~: estimates are in the figure
    assert "cloudflare: today: 7,340 of 10,000 free neurons used (73 %)" in table
    assert "backup: today: 120 of 10,000 free neurons used (1 %)" in table


def test_usage_by_key_shows_key_names(cli: Invoke) -> None:
    cli("keygen", "--name", "laptop")
    (key,) = json.loads(cli("keys", "list", "--json").stdout)
    UsageLog(load_settings().database).write([row(key=key["id"], model="m1", status=200, latency=5.0),
                                              row(key="key_gone", model="m1", status=200, latency=5.0)])
    groups = {g["group"]: g for g in json.loads(cli("usage", "--by", "key", "--json").stdout)["groups"]}
    assert groups[key["id"]]["name"] == "laptop" and groups["key_gone"]["name"] is None
    header, *lines = cli("usage", "--by", "key").stdout.splitlines()
    assert header.split("\t")[:3] == ["key", "name", "requests"]
    assert sorted(line.split("\t")[:3] for line in lines) == [[key["id"], "laptop", "1"], ["key_gone", "-", "1"]]
    assert "name" not in json.loads(cli("usage", "--json").stdout)["groups"][0]  # by model: no key names
