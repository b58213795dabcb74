"""`cfai models` against the emulator's catalogue: JSON for scripts, tab-separated lines when piped."""

from __future__ import annotations

import json

from tests.cli.conftest import Invoke


def test_json_lists_every_field(cli: Invoke) -> None:
    result = cli("models", "--offline", "--json")
    assert result.exit_code == 0
    models = json.loads(result.stdout)
    assert models and {m["id"] for m in models} >= {"@cf/meta/llama-3.3-70b-instruct-fp8-fast"}
    assert set(models[0]) == {"id", "task", "description", "created", "context_window", "function_calling",
                              "reasoning", "beta", "planned_deprecation_date", "vision"}
    assert "OFFLINE" in result.stderr


def test_piped_output_is_tab_separated_under_a_header(cli: Invoke) -> None:
    result = cli("models", "--offline")
    assert result.exit_code == 0
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert header == ["name", "task", "context", "tools", "beta"]
    assert rows and all(len(row) == 5 for row in rows)
    assert all(row[0].startswith("@") for row in rows)
    assert all(row[3] in ("yes", "no") and row[4] in ("yes", "no") for row in rows)


def test_search_and_task_filter(cli: Invoke) -> None:
    every = json.loads(cli("models", "--offline", "--json").stdout)
    found = json.loads(cli("models", "--offline", "--json", "--search", "llama").stdout)
    assert found and len(found) < len(every)
    assert all("llama" in (m["id"] + m["description"]).lower() for m in found)
    task = json.loads(cli("models", "--offline", "--json", "--task", "Text Embeddings").stdout)
    assert task and {m["task"] for m in task} == {"Text Embeddings"}


def test_without_credentials_exits_3(cli: Invoke) -> None:
    result = cli("models")
    assert result.exit_code == 3
    assert result.stdout == ""
