"""`cfai rerank` against the emulator: score<TAB>text when piped, --json, --top, stdin, a table on a terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cfai_cli.cli.render import OutputOptions
from cfai_cli.cli.rerank import rerank
from tests.cli.conftest import Invoke

DOCS = "Bananas are yellow\n\nBerlin is the capital of Germany\nParis is the capital of France\n"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    path = tmp_path / "docs.txt"
    path.write_text(DOCS, encoding="utf-8")
    return path


def test_piped_output_is_score_tab_text_best_first(cli: Invoke, docs: Path) -> None:
    result = cli("rerank", "capital of France", "--file", str(docs), "--offline")
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [text for _, text in rows] == ["Paris is the capital of France", "Berlin is the capital of Germany",
                                          "Bananas are yellow"]
    assert [float(score) for score, _ in rows] == [1.0, pytest.approx(2 / 3), 0.0]
    assert "OFFLINE" in result.stderr and "OFFLINE" not in result.stdout


def test_json_is_the_rerank_object_and_top_cuts(cli: Invoke, docs: Path) -> None:
    result = cli("rerank", "capital of France", "-f", str(docs), "--top", "1", "--json", "--offline",
                 "-m", "rerank-english-v3.0")
    body = json.loads(result.stdout)
    assert body["model"] == "@cf/baai/bge-reranker-base" and body["id"].startswith("rerank-")
    # Indices are the documents' (blank lines are not documents), with their text.
    assert body["results"] == [{"index": 2, "relevance_score": 1.0,
                                "document": {"text": "Paris is the capital of France"}}]


@pytest.mark.parametrize("file_args", [[], ["--file", "-"]])
def test_stdin_is_read_without_file_or_with_dash(cli: Invoke, file_args: list[str]) -> None:
    result = cli("rerank", "yellow", *file_args, "--offline", input="red apples\nyellow bananas\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "1.000000\tyellow bananas"


def test_usage_errors_exit_2(cli: Invoke, tmp_path: Path) -> None:
    blank = cli("rerank", "q", "--offline", input="\n \n")
    assert blank.exit_code == 2 and "no documents" in blank.stderr
    missing = cli("rerank", "q", "--file", str(tmp_path / "nope.txt"), "--offline")
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    zero = cli("rerank", "q", "--top", "0", "--offline", input="a\n")
    assert zero.exit_code == 2


def test_rejected_requests_exit_4_with_one_line(cli: Invoke) -> None:
    result = cli("rerank", "q", "-m", "no-such-reranker", "--offline", input="a\n")
    assert result.exit_code == 4 and result.stderr.strip().splitlines()[-1].startswith("cfai: ")
    assert result.stdout == ""


class _TTY:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def read(self) -> str:
        return ""


COMMAND: Any = SimpleNamespace(obj=OutputOptions())


def test_on_a_terminal_it_prints_a_ranked_table(monkeypatch: pytest.MonkeyPatch, docs: Path) -> None:
    out = _TTY()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", _TTY())
    monkeypatch.setenv("CFAI_HOME", str(docs.parent))
    rerank(COMMAND, "capital of France", file=docs, top=2, model="rerank-v3.5", json_out=False, offline=True,
           timeout=None)
    text = "".join(out.parts)
    assert "rank" in text and "score" in text and "line" in text
    first, second = text.index("Paris is the capital of France"), text.index("Berlin is the capital of Germany")
    assert first < second and "Bananas" not in text and "1.0000" in text


def test_with_a_terminal_on_stdin_and_no_file_it_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    import typer

    monkeypatch.setattr(sys, "stdin", _TTY())
    monkeypatch.setattr(sys, "stderr", _TTY())
    monkeypatch.setenv("CFAI_HOME", str(tmp_path))
    with pytest.raises(typer.BadParameter):
        rerank(COMMAND, "q", file=None, top=None, model="rerank-v3.5", json_out=False, offline=True, timeout=None)
