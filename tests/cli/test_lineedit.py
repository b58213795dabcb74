"""The interactive chat's line editor: real prompt_toolkit key handling fed through a pipe (bracketed paste,
Enter, Alt-Enter, \"\"\" blocks, Ctrl-C, Ctrl-D, history), the history file and Tab completion."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from cfai_cli.cli import lineedit
from cfai_cli.cli.lineedit import BoundedHistory, SlashCompleter, reader

PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


def entries(keys: str, history: Path) -> Iterator[str | type[BaseException]]:
    """What successive reads return for `keys` typed at the prompt (the exception type for Ctrl-C/Ctrl-D)."""
    with create_pipe_input() as pipe, asyncio.Runner() as runner:
        pipe.send_text(keys)
        read = reader(runner, history, lambda: [], color=False, input=pipe, output=DummyOutput())
        while True:
            try:
                yield read()
            except KeyboardInterrupt:
                yield KeyboardInterrupt
            except EOFError:
                yield EOFError
                return


def test_keys(tmp_path: Path) -> None:
    keys = (f"{PASTE_START}line one\r\nline two\nline three{PASTE_END}\r"  # a paste, then Enter: one entry
            'hello\r'
            '"""\rfirst\rsecond\r"""\r'  # Enter inside an open """ block adds a line
            "with\x1b\rnewline\r"  # Alt-Enter (Esc, Enter) adds a line
            "typed then\x03"  # Ctrl-C clears the line
            "\x04")  # Ctrl-D on an empty line leaves
    got = list(entries(keys, tmp_path / "history"))
    assert got == ["line one\nline two\nline three", "hello", '"""\nfirst\nsecond\n"""', "with\nnewline",
                   KeyboardInterrupt, EOFError]


def test_history_is_kept_in_a_private_file_and_recalled(tmp_path: Path) -> None:
    path = tmp_path / "data" / "chat-history"
    assert list(entries("first entry\r\x04", path)) == ["first entry", EOFError]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "+first entry" in path.read_text()
    # A second session: Up recalls the first one's entry.
    assert list(entries("\x1b[A\r\x04", path)) == ["first entry", EOFError]


def test_the_history_file_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineedit, "MAX_ENTRIES", 3)
    monkeypatch.setattr(lineedit, "MAX_ENTRY_CHARS", 10)
    path = tmp_path / "history"
    history = BoundedHistory(path)
    for i in range(6):
        history.store_string(f"entry {i}")
    history.store_string("far too long to remember")
    assert BoundedHistory(path).path.read_text().count("+entry") == 3  # trimmed when a session starts
    assert list(BoundedHistory(path).load_history_strings()) == ["entry 5", "entry 4", "entry 3"]


def test_an_unusable_history_file_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()  # a directory where the file should be
    warnings: list[str] = []
    with create_pipe_input() as pipe, asyncio.Runner() as runner:
        pipe.send_text("still works\r")
        read = reader(runner, tmp_path / "history", lambda: [], color=False, warn=warnings.append, input=pipe,
                      output=DummyOutput())
        assert read() == "still works"
    assert len(warnings) == 1 and "cannot keep the chat history" in warnings[0]


def completions(text: str, models: list[str] | None = None) -> list[str]:
    completer = SlashCompleter(lambda: models or [])
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]


def test_tab_completes_commands_models_and_paths(tmp_path: Path) -> None:
    assert completions("/mo") == ["/model"]
    assert set(completions("/s")) == {"/system", "/save", "/save!"}
    assert completions("/model gpt", ["gpt-4o", "gpt-4o-mini", "@cf/x/y"]) == ["gpt-4o", "gpt-4o-mini"]
    (tmp_path / "notes.txt").write_text("x")
    assert completions(f"/attach {tmp_path}/no") == ["tes.txt"]
    assert completions("hello /mo") == [] and completions("/model") == ["/model"]
