"""`cfai embed` against the emulator: NDJSON when piped, the OpenAI object with --json, --similar ranking."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Invoke


def test_piped_output_is_ndjson_per_text(cli: Invoke) -> None:
    result = cli("embed", "--offline", "first text", "second text")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["index"], r["text"]) for r in rows] == [(0, "first text"), (1, "second text")]
    assert all(len(r["embedding"]) == 768 for r in rows)
    assert "OFFLINE" in result.stderr and "OFFLINE" not in result.stdout


def test_json_is_the_openai_list_object(cli: Invoke) -> None:
    result = cli("embed", "--offline", "--json", "-m", "@cf/baai/bge-small-en-v1.5", "hello")
    body = json.loads(result.stdout)
    assert body["object"] == "list" and body["model"] == "@cf/baai/bge-small-en-v1.5"
    assert len(body["data"][0]["embedding"]) == 384 and body["usage"]["prompt_tokens"] > 0


def test_stdin_lines_and_file(cli: Invoke, tmp_path: Path) -> None:
    piped = cli("embed", "--offline", input="alpha\n\nbeta\n")
    assert [json.loads(line)["text"] for line in piped.stdout.splitlines()] == ["alpha", "beta"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\ntwo\nthree\n", encoding="utf-8")
    from_file = cli("embed", "--offline", "--file", str(corpus))
    assert len(from_file.stdout.splitlines()) == 3


def test_similar_ranks_the_corpus(cli: Invoke, tmp_path: Path) -> None:
    corpus = tmp_path / "faq.txt"
    corpus.write_text("how to reset a password\nshipping times to europe\n\nreset your password in settings\n",
                      encoding="utf-8")
    result = cli("embed", "--offline", "--similar", "reset password", "--file", str(corpus), "--top", "2", "--json")
    assert result.exit_code == 0, result.stderr
    matches = json.loads(result.stdout)
    assert [m["rank"] for m in matches] == [1, 2]
    assert {m["line"] for m in matches} == {1, 4}  # line numbers in the file, blank lines counted
    assert matches[0]["score"] >= matches[1]["score"]
    table = cli("embed", "--offline", "--similar", "reset password", "--file", str(corpus), "--top", "1")
    header, row = table.stdout.splitlines()
    assert header.split("\t")[:2] == ["rank", "score"]
    assert row.split("\t")[0] == "1" and "password" in row


def test_errors_and_exit_statuses(cli: Invoke, tmp_path: Path) -> None:
    assert cli("embed", "--offline", input="").exit_code == 2  # nothing to embed
    assert cli("embed", "--offline", "x", "--file", str(tmp_path / "missing.txt")).exit_code == 2
    empty = cli("embed", "--offline", "ok", "")
    assert empty.exit_code == 4 and "input[1]" in empty.stderr
    dims = cli("embed", "--offline", "--dimensions", "1024", "x")  # bge-base has 768
    assert dims.exit_code == 4 and "768" in dims.stderr and "dimensions" in dims.stderr
    assert cli("embed", "x").exit_code == 3  # no credentials
